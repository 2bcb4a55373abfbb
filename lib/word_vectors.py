"""Word vectors for Section 3's experiment on words: a corpus, word2vec on two disjoint halves, committed files.

Half A of the corpus trains the vectors the chapter inspects; half B, sharing no sentence with A, trains
the vectors that score a word set's coherence from outside. The offline corpus is WordNet 3.0's glosses
(Debian's `wordnet-base`), each synset's words followed by its gloss; `text8` (via `gensim.downloader`)
needs the network. `python -m lib word-vectors` rebuilds `data/words/`, which the book reads with `load`.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).resolve().parent.parent / "data" / "words"
WORDNET = Path("/usr/share/wordnet")
REBUILD = "python -m lib word-vectors"
PARAMS = {"vector_size": 100, "window": 5, "min_count": 10, "sg": 1, "negative": 5, "sample": 1e-3, "epochs": 20}
POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
LEXNAMES = (  # WordNet's lexicographer files ("supersenses"), by their number in the data files
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception "
    "verb.possession verb.social verb.stative verb.weather adj.ppl").split()
SUFFIXES = {"n": [("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
                  ("men", "man"), ("ies", "y")],
            "v": [("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
                  ("ing", "")],
            "a": [("er", ""), ("est", ""), ("er", "e"), ("est", "e")], "r": []}  # WordNet's morphy rules


@dataclass(frozen=True)
class WordVectors:
    """The inspected vectors (half A), the reference vectors (half B), and per word its count and supersense."""
    words: np.ndarray  # [V] str, by count in A, most frequent first
    vectors: np.ndarray  # [V, D] float64, trained on half A
    reference: np.ndarray  # [V, D'] float64, trained on half B
    counts: np.ndarray  # [V] int64, occurrences in half A
    supersense: np.ndarray  # [V] int64, index into LEXNAMES of the word's most used sense, -1 if none
    meta: dict


TEXT8_TOKENS = 17_005_207  # words in text8 (the first 10^8 bytes of English Wikipedia, cleaned): its published size


def tokenise(text: str) -> list[str]:
    """Lowercase runs of the letters a-z: 'Dogs' bark (loudly)' -> ['dogs', 'bark', 'loudly']."""
    return re.findall(r"[a-z]+", text.lower())


def wordnet_sentences(root: Path = WORDNET) -> list[list[str]]:
    """One sentence per synset of WordNet's data.{noun,verb,adj,adv}: its words, then its gloss, tokenised."""
    sentences = []
    for name in POS.values():
        path = Path(root) / f"data.{name}"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: install WordNet 3.0 (apt-get install wordnet-base)")
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or " | " not in line:
                continue  # the licence header
            head, _, gloss = line.partition(" | ")
            fields = head.split()
            lemmas = [fields[4 + 2 * i] for i in range(int(fields[3], 16))]
            sentences.append(tokenise(" ".join(lemmas).replace("_", " ") + " " + gloss))
    return sentences


def text8_sentences() -> list[list[str]]:
    """text8 (the first 10^8 bytes of English Wikipedia, cleaned) in chunks of 10,000 words: needs the network."""
    try:
        import gensim.downloader
        return [list(chunk) for chunk in gensim.downloader.load("text8")]
    except Exception as err:  # no network, no gensim-data mirror: say what works offline
        raise RuntimeError(f"could not load text8 through gensim.downloader ({err}); it needs the network. "
                           f"Offline, use `{REBUILD} --corpus wordnet`") from err


def split_halves(sentences: Sequence[list[str]], seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Two disjoint halves of the sentences by a seeded permutation (A gets the extra one when odd)."""
    if len(sentences) < 2:
        raise ValueError(f"need at least 2 sentences to split, got {len(sentences)}")
    order = np.random.default_rng(seed).permutation(len(sentences))
    half = (len(sentences) + 1) // 2
    return [sentences[i] for i in order[:half]], [sentences[i] for i in order[half:]]


def stable_hash(text: str) -> int:
    """CRC-32 of the UTF-8 text: gensim's per-word seeds without Python's salted `hash` (PYTHONHASHSEED)."""
    return zlib.crc32(text.encode("utf-8"))


def train(sentences: Sequence[list[str]], seed: int, **params) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Word2Vec (gensim, one worker: deterministic) -> words (most frequent first), vectors [V, D], counts [V]."""
    from gensim.models import Word2Vec

    model = Word2Vec(sentences, workers=1, seed=seed, hashfxn=stable_hash, **{**PARAMS, **params})
    words = list(model.wv.index_to_key)
    counts = np.array([model.wv.get_vecattr(w, "count") for w in words], dtype=np.int64)
    return words, model.wv.vectors.copy(), counts


def _morphy_bases(word: str, pos: str, exceptions: dict[str, dict[str, list[str]]]) -> list[str]:
    bases = [word, *exceptions[pos].get(word, [])]
    return bases + [word[: -len(old)] + new for old, new in SUFFIXES[pos]
                    if word.endswith(old) and len(word) > len(old)]


def supersenses(words: Sequence[str], root: Path = WORDNET) -> np.ndarray:
    """Per word, the lexicographer file of its most used sense (WordNet's base forms, most tagged POS), else -1."""
    root = Path(root)
    index, exceptions, lexfile = {}, {}, {}
    for pos, name in POS.items():
        for line in (root / f"data.{name}").read_text(encoding="latin-1").splitlines():
            if not line.startswith(" "):
                fields = line.split(maxsplit=2)
                lexfile[pos, fields[0]] = int(fields[1])
        for line in (root / f"index.{name}").read_text(encoding="latin-1").splitlines():
            if not line.startswith(" "):
                f = line.split()
                n_synsets, n_pointers = int(f[2]), int(f[3])
                tagged = int(f[5 + n_pointers])
                index[pos, f[0]] = (tagged, n_synsets, f[6 + n_pointers])  # offsets: most used sense first
        exc = root / f"{name}.exc"
        lines = exc.read_text(encoding="latin-1").splitlines() if exc.exists() else []
        exceptions[pos] = {f[0]: f[1:] for f in map(str.split, lines) if len(f) > 1}
    out = np.full(len(words), -1, dtype=np.int64)
    for i, word in enumerate(words):
        found = [(index[pos, base], -k, pos) for k, pos in enumerate(POS)
                 for base in _morphy_bases(word, pos, exceptions) if (pos, base) in index]
        if found:
            (_, _, offset), _, pos = max(found, key=lambda t: (t[0][0], t[0][1], t[1]))
            out[i] = lexfile[pos, offset]
    return out


def _package_version(name: str) -> str | None:
    try:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name], capture_output=True, text=True,
                              check=True).stdout or None
    except (OSError, subprocess.CalledProcessError):
        return None


def build(corpus: str = "wordnet", seed: int = 0, folder: Path = FOLDER, wordnet: Path = WORDNET,
          **params) -> dict:
    """Train both halves of `corpus` ('wordnet' or 'text8'), keep the words both know, write them to `folder`."""
    import gensim

    if corpus not in ("wordnet", "text8"):
        raise ValueError(f"corpus must be 'wordnet' or 'text8', got {corpus!r}")
    sentences = wordnet_sentences(wordnet) if corpus == "wordnet" else text8_sentences()
    halves, seconds, trained = split_halves(sentences, seed), [], []
    for half in halves:
        start = time.perf_counter()
        trained.append(train(half, seed, **params))
        seconds.append(round(time.perf_counter() - start, 1))
    (words_a, vectors_a, counts_a), (words_b, vectors_b, counts_b) = trained
    in_b = {w: i for i, w in enumerate(words_b)}
    keep = [i for i, w in enumerate(words_a) if w in in_b]
    words = [words_a[i] for i in keep]
    rows_b = [in_b[w] for w in words]
    labels = supersenses(words, wordnet) if (Path(wordnet) / "index.noun").exists() else np.full(len(words), -1)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / "vectors.npz", words=np.array(words), vectors=vectors_a[keep].astype(np.float16),
                        reference=vectors_b[rows_b].astype(np.float16), counts=counts_a[keep].astype(np.int32),
                        counts_b=counts_b[rows_b].astype(np.int32), supersense=labels.astype(np.int8))
    meta = {"corpus": corpus, "source": ("WordNet 3.0 glosses, Debian package wordnet-base "
                                         f"{_package_version('wordnet-base')}: each synset's words then its gloss"
                                         if corpus == "wordnet" else "text8 via gensim.downloader"),
            "sentences": [len(h) for h in halves], "tokens": [sum(map(len, h)) for h in halves], "seed": seed,
            "split": "numpy default_rng(seed).permutation of the sentences; half A trains `vectors`, B `reference`",
            "params": {**PARAMS, **params, "workers": 1, "hashfxn": "crc32"}, "gensim": gensim.__version__,
            "numpy": np.__version__, "train_seconds": seconds, "vocabulary": [len(words_a), len(words_b)],
            "words_kept": len(words), "stored_as": "float16", "command": f"{REBUILD} --corpus {corpus} --seed {seed}"}
    (folder / "provenance.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load(folder: Path = FOLDER) -> WordVectors:
    """The committed word vectors (`build`'s files), as float64; a clear error naming the command if missing."""
    path = Path(folder) / "vectors.npz"
    if not path.exists() or not (Path(folder) / "provenance.json").exists():
        raise FileNotFoundError(f"no word vectors in {folder}: run `{REBUILD}` (needs gensim and wordnet-base)")
    with np.load(path, allow_pickle=False) as f:
        return WordVectors(f["words"], f["vectors"].astype(np.float64), f["reference"].astype(np.float64),
                           f["counts"].astype(np.int64), f["supersense"].astype(np.int64),
                           json.loads((Path(folder) / "provenance.json").read_text()))
