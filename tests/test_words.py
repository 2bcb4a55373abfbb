"""Word vectors (lib/word_vectors.py) and Section 3 on words (lib/words.py): scores, training, offline path."""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lib import units, word_vectors, words

ROOT = Path(__file__).resolve().parent.parent
TINY = [["the", "dog", "barks", "at", "the", "cat"], ["the", "cat", "chases", "a", "mouse"],
        ["bread", "is", "baked", "from", "flour", "and", "water"], ["a", "dog", "and", "a", "cat", "run"]] * 20

# A WordNet in miniature, in the real file formats: data lines "offset lexfile pos count word lex_id ... | gloss",
# index lines "lemma pos synset_cnt p_cnt [pointers] sense_cnt tagsense_cnt offsets (most used first)".
FAKE_WORDNET = {
    "data.noun": "  1 licence header\n"
                 "00000001 05 n 01 dog 0 000 | a domesticated canine that barks at a cat\n"
                 "00000002 05 n 02 cat 0 true_cat 0 000 | a small feline that chases a dog\n"
                 "00000003 13 n 01 bread 0 000 | food baked from flour and water\n"
                 "00000004 06 n 01 run 0 000 | a score in baseball\n",
    "index.noun": "  1 licence header\ndog n 1 1 @ 1 1 00000001\ncat n 1 0 1 1 00000002\n"
                  "bread n 1 0 1 1 00000003\nrun n 1 0 1 0 00000004\n",
    "data.verb": "00000001 38 v 01 run 0 000 | move fast on foot; \"the dog ran to the cat\"\n",
    "index.verb": "run v 1 0 1 5 00000001\n",
    "verb.exc": "ran run\n",
    "data.adj": "", "index.adj": "", "data.adv": "", "index.adv": "",
}


@pytest.fixture()
def fake_wordnet(tmp_path) -> Path:
    folder = tmp_path / "wordnet"
    folder.mkdir()
    for name, text in FAKE_WORDNET.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture(scope="module")
def committed() -> word_vectors.WordVectors:
    return word_vectors.load()


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled in this test")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _indices(wv: word_vectors.WordVectors, *groups: list[str]) -> np.ndarray:
    position = {w: i for i, w in enumerate(wv.words)}
    missing = [w for g in groups for w in g if w not in position]
    assert not missing, f"test words not in the committed vocabulary: {missing}"
    return np.array([[position[w] for w in g] for g in groups])


# ----- the coherence score ------------------------------------------------------------------------------

SYNONYMS = [["big", "large", "huge", "enormous", "giant"], ["small", "little", "tiny", "minute", "slight"],
            ["ill", "sick", "infected", "disease", "illness"], ["red", "yellow", "green", "blue", "purple"],
            ["dog", "cat", "horse", "cow", "sheep"], ["walk", "run", "jump", "climb", "swim"]]
UNRELATED = [["big", "court", "seven", "sail", "moral"], ["small", "lawyer", "ship", "copper", "opinion"],
             ["ill", "bridge", "poem", "cotton", "tax"], ["red", "judge", "engine", "verb", "wheat"],
             ["dog", "angle", "theory", "bank", "violin"], ["walk", "acid", "king", "salary", "century"]]


def test_synonyms_score_above_unrelated_words_and_random_sets(committed):
    synonyms = words.coherence(_indices(committed, *SYNONYMS), committed)
    unrelated = words.coherence(_indices(committed, *UNRELATED), committed)
    random_sets = units.random_image_sets(len(committed.words), 500, 5, seed=0).numpy()
    chance = words.coherence(random_sets, committed)
    # every synonym set beats its unrelated twin (same first word) and 95% of random sets in half B's vectors
    assert (synonyms["cosine:B"] > unrelated["cosine:B"]).all()
    assert (synonyms["cosine:B"] > chance["cosine:B"].quantile(0.95)).all()
    assert synonyms["supersense"].mean() > max(unrelated["supersense"].mean(), chance["supersense"].mean() + 0.3)


def test_the_cosine_score_reads_the_reference_vectors_only(committed):
    sets = _indices(committed, *SYNONYMS)
    scrambled = dataclasses.replace(committed, vectors=np.zeros_like(committed.vectors),
                                    reference=np.random.default_rng(0).standard_normal(committed.reference.shape))
    assert words.coherence(sets, committed)["cosine:B"].mean() > 0.2
    assert abs(words.coherence(sets, scrambled)["cosine:B"].mean()) < 0.05
    assert (words.coherence(sets, scrambled)["supersense"] == words.coherence(sets, committed)["supersense"]).all()


def test_supersense_agreement_by_hand():
    labels = np.array([[1, 1, 2, -1], [-1, -1, -1, -1], [4, 4, 4, 4]])
    assert words.supersense_agreement(labels).tolist() == pytest.approx([1 / 6, 0.0, 1.0])
    with pytest.raises(ValueError):
        words.supersense_agreement(np.array([[1], [2]]))


def test_frequency_matched_sets_keep_each_words_decile():
    counts = np.arange(100, 0, -1)  # word i is the i-th most frequent: decile i // 10
    sets = np.array([[0, 1, 55, 99], [10, 20, 30, 40]])
    matched = words.frequency_matched_sets(sets, counts, per_set=3, seed=0)
    assert matched.shape == (6, 4)
    assert (matched // 10 == np.repeat(sets, 3, axis=0) // 10).all()
    assert all(len(set(row)) == len(row) for row in matched.tolist())
    assert (matched == words.frequency_matched_sets(sets, counts, per_set=3, seed=0)).all()
    assert not (matched == words.frequency_matched_sets(sets, counts, per_set=3, seed=1)).all()


def test_norm_frequency_sees_a_planted_correlation():
    rng = np.random.default_rng(0)
    counts = rng.integers(10, 10_000, 500)
    vectors = rng.standard_normal((500, 8))
    tracked = words.normalise(vectors) * np.log(counts)[:, None]
    assert words.norm_frequency(tracked, counts)["spearman_rho"] == pytest.approx(1.0)
    untracked = words.normalise(vectors) * rng.uniform(1, 2, (500, 1))
    assert abs(words.norm_frequency(untracked, counts)["spearman_rho"]) < 0.2


def test_p_text():
    assert words.p_text(0.0) == "< 1e-300" and words.p_text(0.0123) == "= 0.01"


def test_experiment_unit_sets_are_each_coordinates_top_words(committed):
    exp = words.experiment(committed, k=6, n_directions=10, n_random=40, per_set=2, seed=0)
    raw, normalised = exp.sets["raw"], exp.sets["normalised"]
    assert raw["units"].shape == (committed.vectors.shape[1], 6) and raw["directions"].shape == (10, 6)
    assert raw["units"][3].tolist() == list(np.argsort(-committed.vectors[:, 3], kind="stable")[:6])
    unit_length = words.normalise(committed.vectors)
    assert normalised["units"][3].tolist() == list(np.argsort(-unit_length[:, 3], kind="stable")[:6])
    assert raw["matched to units"].shape == (2 * committed.vectors.shape[1], 6)
    assert list(exp.scores["raw"]["random sets"].columns) == list(words.STATISTICS)
    frequency = words.frequency_table(exp, committed)
    assert len(frequency) == len(words.VECTORS) * len(words.KINDS) * len(words.STATISTICS)
    row = frequency[(frequency["vectors"] == "normalised") & (frequency["group"] == "directions")
                    & (frequency["score"] == "cosine:B")].iloc[0]
    scores = exp.scores["normalised"]
    chance = scores["random sets"]["cosine:B"].mean()
    matched, own = scores["matched to directions"]["cosine:B"].mean(), scores["directions"]["cosine:B"].mean()
    assert row["explained by frequency"] == pytest.approx((matched - chance) / (own - chance))
    top_counts = committed.counts[exp.sets["normalised"]["directions"]]
    assert row["mean log10 count"] == pytest.approx(np.log10(top_counts).mean())


# ----- training: deterministic, and the files the book reads ---------------------------------------------

def test_training_is_deterministic_with_a_seed_and_one_worker():
    words_a, vectors_a, counts_a = word_vectors.train(TINY, seed=0, vector_size=8, min_count=1, epochs=3)
    words_b, vectors_b, counts_b = word_vectors.train(TINY, seed=0, vector_size=8, min_count=1, epochs=3)
    assert words_a == words_b and (counts_a == counts_b).all()
    assert np.array_equal(vectors_a, vectors_b)
    _, vectors_c, _ = word_vectors.train(TINY, seed=1, vector_size=8, min_count=1, epochs=3)
    assert not np.array_equal(vectors_a, vectors_c)
    assert dict(zip(words_a, counts_a.tolist()))["dog"] == 40


def test_training_does_not_depend_on_pythons_hash_seed(tmp_path):
    script = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); from lib import word_vectors; "
              f"np.save(sys.argv[2], word_vectors.train({TINY!r}, seed=0, vector_size=8, min_count=1, epochs=3)[1])")
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(ROOT), str(tmp_path / f"{seed}.npy")], env=env, check=True)
    assert np.array_equal(np.load(tmp_path / "1.npy"), np.load(tmp_path / "2.npy"))


def test_split_halves_are_disjoint_and_seeded():
    sentences = [[str(i)] for i in range(11)]
    a, b = word_vectors.split_halves(sentences, seed=0)
    assert len(a) == 6 and len(b) == 5 and sorted(a + b) == sorted(sentences)
    assert word_vectors.split_halves(sentences, seed=0) == (a, b) != word_vectors.split_halves(sentences, seed=1)


def test_wordnet_reading_and_supersenses(fake_wordnet):
    sentences = word_vectors.wordnet_sentences(fake_wordnet)
    assert sentences[1] == ["cat", "true", "cat", "a", "small", "feline", "that", "chases", "a", "dog"]
    assert len(sentences) == 5  # the header line is not a synset
    labels = word_vectors.supersenses(["dog", "dogs", "cats", "ran", "run", "the"], fake_wordnet)
    lex = [word_vectors.LEXNAMES[i] if i >= 0 else None for i in labels]
    # 'run' is a noun and a verb; the verb has more tagged senses, so its first sense (verb.motion) wins
    assert lex == ["noun.animal", "noun.animal", "noun.animal", "verb.motion", "verb.motion", None]


def test_offline_build_and_load_round_trip(fake_wordnet, tmp_path, no_network):
    folder = tmp_path / "words"
    meta = word_vectors.build("wordnet", seed=0, folder=folder, wordnet=fake_wordnet, vector_size=8, min_count=1,
                              epochs=2)
    wv = word_vectors.load(folder)
    assert meta["words_kept"] == len(wv.words) and wv.vectors.shape == wv.reference.shape == (len(wv.words), 8)
    assert set(wv.words) <= set(w for s in word_vectors.wordnet_sentences(fake_wordnet) for w in s)
    assert json.loads((folder / "provenance.json").read_text())["params"]["workers"] == 1
    with pytest.raises(ValueError, match="corpus"):
        word_vectors.build("wikipedia", folder=folder, wordnet=fake_wordnet)


def test_text8_without_network_names_the_offline_corpus(monkeypatch):
    gensim_downloader = pytest.importorskip("gensim.downloader")

    def offline(name):
        raise OSError("no network")
    monkeypatch.setattr(gensim_downloader, "load", offline)
    with pytest.raises(RuntimeError, match="--corpus wordnet"):
        word_vectors.text8_sentences()


def test_the_book_reads_committed_vectors_offline(no_network):
    wv = word_vectors.load()
    assert len(wv.words) == len(wv.counts) == len(wv.supersense) == len(wv.vectors) == len(wv.reference)


def test_missing_vectors_name_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m lib word-vectors"):
        word_vectors.load(tmp_path)


def test_committed_vectors_are_small_and_match_their_provenance(committed):
    files = sorted(word_vectors.FOLDER.iterdir())
    assert sum(f.stat().st_size for f in files) <= 5 * 2**20
    assert any("LICENSE" in f.name for f in files)
    meta = committed.meta
    assert meta["corpus"] == "wordnet" and meta["params"]["workers"] == 1 and meta["words_kept"] == len(committed.words)
    assert committed.vectors.shape == (meta["words_kept"], meta["params"]["vector_size"])
    assert (np.diff(committed.counts) <= 0).all() and committed.counts.min() >= meta["params"]["min_count"]


# ----- findings ----------------------------------------------------------------------------------------

def _table(units_vs_directions: str = "no detectable difference", vs_matched: str = "a > b") -> pd.DataFrame:
    rows = []
    for vectors in words.VECTORS:
        for stat in words.STATISTICS:
            for a, b in words.PAIRS:
                verdict = (units_vs_directions if (a, b) == ("units", "directions") else
                           vs_matched if b.startswith("matched") else "a > b")
                rows.append({"vectors": vectors, "statistic": stat, "a": a, "b": b, "cohens_d": 0.5,
                             "verdict": verdict})
    return pd.DataFrame(rows)


CONFOUND = {"spearman_rho": 0.6, "spearman_p": 1e-9, "pearson_r": 0.5, "n": 100}


def test_findings_verdicts_follow_their_inputs():
    holds = [f.holds for f in words.findings(_table(), CONFOUND)]
    assert holds == [True, True, True, False, True, True]  # the seed document's impression: no units ahead
    ahead = words.findings(_table(units_vs_directions="a > b"), CONFOUND)
    assert ahead[2].holds is False and ahead[3].holds is True
    behind = words.findings(_table(units_vs_directions="a < b"), CONFOUND)
    assert behind[2].holds is True and behind[3].holds is False and "directions ahead" in behind[2].note
    assert words.findings(_table(vs_matched="no detectable difference"), CONFOUND)[4].holds is False
    assert words.findings(_table(), {**CONFOUND, "spearman_rho": 0.1})[5].holds is False
    assert words.findings(_table(), {**CONFOUND, "spearman_p": 0.2})[5].holds is False
    chance = _table()
    chance.loc[(chance["a"] == "directions") & (chance["b"] == "random sets"), "verdict"] = "a < b"
    assert [f.holds for f in words.findings(chance, CONFOUND)][:2] == [True, False]
    with pytest.raises(ValueError, match="columns"):
        words.findings(_table().drop(columns="verdict"), CONFOUND)
