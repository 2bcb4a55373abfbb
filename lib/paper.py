"""The paper's numbers, as data: Szegedy et al., "Intriguing properties of neural networks" (ICLR 2014).

Transcribed from arXiv:1312.6199v4 (the ICLR version) unless a field says otherwise. Every chapter
shows these labelled as the paper's, beside what our code computes. Errors are in percent.
Keys are our zoo names; `label` is the paper's own name for the model.
"""
from __future__ import annotations

SOURCE = "Szegedy et al., Intriguing properties of neural networks, arXiv:1312.6199v4 (ICLR 2014)"

# Table 1: training error, test error, average minimum distortion (sqrt(sum r^2 / n)).
TABLE1 = {
    "softmax-1e-4": {"label": "FC10(1e-4)", "train_error": 6.7, "test_error": 7.4, "distortion": 0.062},
    "softmax-1e-2": {"label": "FC10(1e-2)", "train_error": 10.0, "test_error": 9.4, "distortion": 0.1},
    "softmax-1": {"label": "FC10(1)", "train_error": 21.2, "test_error": 20.0, "distortion": 0.14},
    "N100-100-10": {"label": "FC100-100-10", "train_error": 0.0, "test_error": 1.64, "distortion": 0.058},
    "N200-200-10": {"label": "FC200-200-10", "train_error": 0.0, "test_error": 1.54, "distortion": 0.065},
    "AE400-10": {"label": "AE400-10", "train_error": 0.57, "test_error": 1.9, "distortion": 0.086},
}
TABLE1_MODELS = tuple(TABLE1)

# Table 2: error induced on each column model by adversarial examples made for each row model
# (a fixed subset of the training set), with the rows' average distortion; two Gaussian-noise rows.
TABLE2_COLUMNS = TABLE1_MODELS
TABLE2 = {
    "softmax-1e-4": ([100.0, 11.7, 22.7, 2.0, 3.9, 2.7], 0.062),
    "softmax-1e-2": ([87.1, 100.0, 35.2, 35.9, 27.3, 9.8], 0.1),
    "softmax-1": ([71.9, 76.2, 100.0, 48.1, 47.0, 34.4], 0.14),
    "N100-100-10": ([28.9, 13.7, 21.1, 100.0, 6.6, 2.0], 0.058),
    "N200-200-10": ([38.2, 14.0, 23.8, 20.3, 100.0, 2.7], 0.065),
    "AE400-10": ([23.4, 16.0, 24.8, 9.4, 6.6, 100.0], 0.086),
    "noise-0.1": ([5.0, 10.1, 18.3, 0.0, 0.0, 0.8], 0.1),
    "noise-0.3": ([15.6, 11.3, 22.7, 5.0, 4.3, 3.1], 0.3),
}

# Table 3: the cross-training-set models (P1, P2 = disjoint halves of the training set).
TABLE3 = {
    "FC100-100-10@P1": {"label": "FC100-100-10 (P1)", "P1_error": 0.0, "P2_error": 2.4, "test_error": 2.0,
                        "distortion": 0.062},
    "FC123-456-10@P1": {"label": "FC123-456-10 (P1)", "P1_error": 0.0, "P2_error": 2.5, "test_error": 2.1,
                        "distortion": 0.059},
    "FC100-100-10@P2": {"label": "FC100-100-10' (P2)", "P1_error": 2.3, "P2_error": 0.0, "test_error": 2.1,
                        "distortion": 0.058},
}
TABLE3_MODELS = tuple(TABLE3)

# Table 4: error induced on the three Table 3 models (columns) by test-set adversarial examples
# generated on each row's model, by Gaussian noise, and by the examples magnified to stddev 0.1.
TABLE4_COLUMNS = TABLE3_MODELS
TABLE4 = {
    "adversarial FC100-100-10@P1 (stddev 0.062)": [100.0, 26.2, 5.9],
    "adversarial FC123-456-10@P1 (stddev 0.059)": [6.25, 100.0, 5.1],
    "adversarial FC100-100-10@P2 (stddev 0.058)": [8.2, 8.2, 100.0],
    "Gaussian noise (stddev 0.06)": [2.2, 2.6, 2.4],
    "magnified FC100-100-10@P1 (stddev 0.1)": [100.0, 98.0, 43.0],
    "magnified FC123-456-10@P1 (stddev 0.1)": [96.0, 100.0, 22.0],
    "magnified FC100-100-10@P2 (stddev 0.1)": [27.0, 50.0, 100.0],
    "Gaussian noise (stddev 0.1)": [2.6, 2.8, 2.7],
}

# Table 5: AlexNet upper Lipschitz bounds per layer (ImageNet), as the ICLR version (v4) prints them.
# `source` says where each cell is read from. The arXiv v1 text in shared/paper has Table 5 garbled (and v1
# printed lower bounds too), and no copy of v4 is stored with the book, so no cell is checked against a stored
# text: the FC rows read 2.5, 2.5, 4 here until 2026-11 and were changed to 3.12, 4, 4 from a summary of v4
# that is not stored with the book either.
TABLE5_CONV_SOURCE = "ICLR version (arXiv v4), transcribed; garbled in arXiv v1"
TABLE5_FC_SOURCE = "ICLR version (arXiv v4), from a secondary summary of its table; garbled in arXiv v1"
TABLE5 = [
    {"layer": "Conv. 1", "size": "11x11x3x96", "stride": 4, "upper_bound": 2.75, "source": TABLE5_CONV_SOURCE},
    {"layer": "Conv. 2", "size": "5x5x96x256", "stride": 1, "upper_bound": 10.0, "source": TABLE5_CONV_SOURCE},
    {"layer": "Conv. 3", "size": "3x3x256x384", "stride": 1, "upper_bound": 7.0, "source": TABLE5_CONV_SOURCE},
    {"layer": "Conv. 4", "size": "3x3x384x384", "stride": 1, "upper_bound": 7.5, "source": TABLE5_CONV_SOURCE},
    {"layer": "Conv. 5", "size": "3x3x384x256", "stride": 1, "upper_bound": 11.0, "source": TABLE5_CONV_SOURCE},
    {"layer": "FC1", "size": "9216x4096", "stride": None, "upper_bound": 3.12, "source": TABLE5_FC_SOURCE},
    {"layer": "FC2", "size": "4096x4096", "stride": None, "upper_bound": 4.0, "source": TABLE5_FC_SOURCE},
    {"layer": "FC3", "size": "4096x1000", "stride": None, "upper_bound": 4.0, "source": TABLE5_FC_SOURCE},
]

# Figure 7 (arXiv v1 and v4): the stddev of the adversarial perturbations it shows for a linear softmax and
# for a 200-200-10 sigmoid network, and the accuracy on images distorted by Gaussian noise of stddev 1.
FIGURE7 = {"softmax stddev": 0.06, "N200-200-10 stddev": 0.063, "noise stddev": 1.0, "noise accuracy %": 51.0}

# Figure 5 (AlexNet): "Average distortion based on 64 examples is 0.006508."
FIGURE5_ALEXNET_DISTORTION = 0.006508

# Section 4.2: "Each of our models were trained with L-BFGS until convergence."
TRAINING = "L-BFGS until convergence"

# Section 4.2, adversarial training of a 100-100-10 sigmoid net: test error in percent.
ADVERSARIAL_TRAINING = {
    "iclr": {"weight decay": 1.6, "dropout": 1.3, "adversarial pool": 1.2,
             "note": "ICLR version: 1.6% with weight decay alone, about 1.3% with dropout, below 1.2% with the pool"},
    "v1": {"weight decay": 6.0, "dropout": 3.0, "adversarial pool": 2.0,
           "note": "arXiv v1 text: 6%, 3%, below 2%"},
}
