import math

import pandas as pd
import pytest

from lib import findings, tables
from lib.findings import Finding


def test_verdicts_and_counts():
    found = [Finding("a", "1", "1", True, key="zero-accuracy"), Finding("b", "2", "3", False, "off by one",
                                                                        key="decay-distortion"),
             Finding("c", "x", "–", None, "needs ImageNet weights", key="alexnet-units")]
    assert [findings.verdict(f) for f in found] == ["holds", "does not hold: off by one",
                                                    "not tested: needs ImageNet weights"]
    assert findings.count(found) == {"holds": 1, "does not hold": 1, "not tested": 1}
    html = findings.table(found).to_html()
    assert "does not hold: off by one" in html and ">book<" in html and ">verdict<" in html


def test_untested_claim_needs_a_reason():
    with pytest.raises(ValueError, match="needs a note"):
        Finding("a", "1", "?", None)
    with pytest.raises(ValueError, match="no findings"):
        findings.table([])


def test_show_hides_the_index_and_prints_counts_as_integers():
    frame = pd.DataFrame({"images": [30000.0, 200.0], "n": [3, 4], "error": [7.3812345, math.nan]},
                         index=["softmax", "N100"])
    html = tables.show(frame, index=True).to_html()
    assert "30000" in html and "30000.0" not in html and "200.000000" not in html
    assert "7.381" in html and tables.MISSING in html
    assert ">softmax<" in html  # the index became an ordinary column
    assert 'class="row_heading' not in html  # and no index column is shown
    twice = pd.concat([frame, frame])  # duplicate index labels
    assert tables.show(twice).to_html().count(">softmax<") == 0 and "30000" in tables.show(twice).to_html()
    with pytest.raises(TypeError, match="DataFrame"):
        tables.show([1, 2])


def test_padded_tables_space_their_cells():
    frame = pd.DataFrame({"mean": [1.99], "sd": [0.09]})
    assert "padding" not in tables.show(frame).to_html()
    assert "padding: 0.15em 0.6em" in tables.show(frame, padded=True).to_html()
