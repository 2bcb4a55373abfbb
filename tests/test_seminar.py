"""The seminar guide (seminar.ipynb, instructor.ipynb, handouts.ipynb, primer_fourier.md, lib/seminar.py).

Its exercise references exist, its plans add up, its links reach real sections, the answers live on the
instructor's page only, the guessing figure gives nothing away, and its numbers.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lib import adversarial_sweep, data, paper, report, seminar, zoo

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = (ROOT / "scripts" / "setup_cell.py").read_text().rstrip("\n")


PAGES = (seminar.GUIDE, seminar.INSTRUCTOR, seminar.HANDOUTS)


def guide_cells(path: Path = seminar.GUIDE) -> list[dict]:
    """The cells of seminar.ipynb (or of another page of the guide)."""
    return json.loads(path.read_text())["cells"]


def guide_markdown(path: Path = seminar.GUIDE) -> list[str]:
    """The markdown cells of seminar.ipynb (or of another page of the guide)."""
    return seminar.markdown_cells(path)


def instructor_markdown() -> list[str]:
    """The markdown cells of the instructor's page."""
    return guide_markdown(seminar.INSTRUCTOR)


def session_cells() -> dict[int, str]:
    """{session number: the markdown cell that opens it ('## Session N: ...')}."""
    return seminar.session_cells()


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


# ---------------------------------------------------------------------------------------------- the guide


def test_every_assigned_exercise_exists_in_its_chapter():
    assigned = [pair for pairs in seminar.ASSIGNMENTS.values() for pair in pairs]
    assert assigned and seminar.missing_exercises(assigned) == []


def test_every_exercise_the_guide_cites_exists_in_its_chapter():
    for path in PAGES:
        assert seminar.missing_exercises(seminar.cited_exercises("\n".join(guide_markdown(path)))) == [], path.name
    cited = seminar.cited_exercises("\n".join(instructor_markdown()))
    assert len(cited) >= sum(len(p) for p in seminar.ASSIGNMENTS.values())  # the expected answers cite them all


def test_every_assigned_exercise_has_an_expected_answer_on_the_instructors_page():
    answers = [text for text in instructor_markdown() if text.startswith("### Expected answers: the exercises")]
    questions = [text for text in instructor_markdown()
                 if text.startswith("### Expected answers: the discussion questions")]
    assert len(answers) == len(questions) == len(seminar.ASSIGNMENTS)
    for session, text in zip(sorted(seminar.ASSIGNMENTS), answers):
        assert set(seminar.cited_exercises(text)) == set(seminar.ASSIGNMENTS[session]), f"session {session}"
    titles = [t.splitlines()[0] for t in instructor_markdown() if t.startswith("## Session ")]
    assert titles == [session_cells()[n].splitlines()[0] for n in sorted(seminar.ASSIGNMENTS)]


def test_the_students_page_has_questions_and_no_answers():
    text = "\n".join(guide_markdown())
    assert "Expected answers" not in text and "{dropdown}" not in text and "Numbers at hand" not in text
    for number, cell in session_cells().items():
        assert "**Questions for discussion.**" in cell and "1. " in cell.split("**Questions for discussion.**")[1]
    assert "{doc}`instructor's page <instructor>`" in text and "{doc}`handouts <handouts>`" in text
    # the students' page computes no answers: only the setup, the guessing figure and the assignments
    sources = ["".join(c["source"]) for c in guide_cells() if c["cell_type"] == "code"]
    assert not [s for s in sources[2:] if "seminar.assignment(" not in s and "labelled=False" not in s]
    assert "labelled=True" not in "".join(sources)


def test_every_page_of_the_guide_is_in_the_toc_after_the_seminar():
    files = toc_files()
    at = files.index("seminar")
    assert files[at + 1: at + 4] == ["instructor", "handouts", "primer_fourier"]
    assert "{doc}`primer on the Fourier argument <primer_fourier>`" in session_cells()[5]


def test_the_paper_is_linked():
    for path in (*PAGES, ROOT / "primer_fourier.md"):
        text = path.read_text()
        assert seminar.PAPER_URL in text, path.name


def test_section_links_reach_existing_headings():
    for path in PAGES:
        text = "\n".join(guide_markdown(path))
        assert seminar.broken_section_links(text) == [], path.name
    links = seminar.section_links("\n".join(guide_markdown()))
    assert len(links) >= 20
    # every chapter section the guide quotes as 'section "..."' or 'Chapter N, "..."' is a link
    for text in guide_markdown():
        assert not re.findall(r'(?:section|Chapter \d), "[A-Z][^"<]*"', text), text[:80]


def test_heading_id_and_broken_links():
    assert seminar.heading_id("The scheme, in `lib/adversarial_training.py`") == \
        "the-scheme-in-lib-adversarial-training-py"
    assert seminar.heading_id("Does weight decay buy robustness? A sweep over $\\lambda$") == \
        "does-weight-decay-buy-robustness-a-sweep-over-lambda"
    good = '<a href="chapters/05_units_vs_directions.html#figures-1-and-2-redrawn">Figures</a>'
    bad = '<a href="chapters/05_units_vs_directions.html#no-such-section">x</a> <a href="nowhere.html#a">y</a>'
    assert seminar.section_links(good) == [("chapters/05_units_vs_directions", "figures-1-and-2-redrawn", "Figures")]
    assert seminar.broken_section_links(good) == []
    assert [b[1] for b in seminar.broken_section_links(bad)] == ["no-such-section", "a"]
    assert "figures-1-and-2-redrawn" in seminar.heading_ids("chapters/05_units_vs_directions")
    assert "what-to-take-to-the-session" in seminar.heading_ids("primer_fourier")


def test_no_runtimes_table_is_referred_to():
    for path in PAGES:
        assert "Runtimes" not in path.read_text(), path.name


def test_every_session_has_a_90_minute_plan_and_its_parts():
    sessions = session_cells()
    assert sorted(sessions) == sorted(seminar.ASSIGNMENTS)
    for number, text in sessions.items():
        assert sum(seminar.plan_minutes(text)) == 90, f"session {number}"
        for part in ("**Learning goals.**", "**Prerequisites.**", "*Colab path:*", "**Figure to project.**",
                     "**90-minute plan.**", "**Questions for discussion.**"):
            assert part in text, f"session {number} lacks {part}"
    for number in seminar.ASSIGNMENTS:
        guide = "".join("".join(c["source"]) for c in guide_cells())
        handouts = "".join("".join(c["source"]) for c in guide_cells(seminar.HANDOUTS))
        assert f"seminar.assignment({number}, page=seminar.GUIDE)" in guide
        assert f"seminar.handout({number}, page=seminar.HANDOUTS)" in handouts


def test_the_slips_of_the_old_guide_are_gone():
    text = "\n".join(guide_markdown())
    assert "book's gain" not in text and "end of Section 4.1" not in text
    pool = session_cells()[4]
    assert "Section 4.2" in pool and "Section 4.1" not in pool


def test_first_code_cell_is_the_shared_setup_cell_hidden():
    for path in PAGES:
        cell = next(c for c in guide_cells(path) if c["cell_type"] == "code")
        source = "".join(cell["source"])
        assert source == TEMPLATE or source.startswith(TEMPLATE + "\n")
        assert {"hide-input", "remove-cell"} & set(cell["metadata"].get("tags", [])), path.name


def test_code_is_hidden_and_outputs_are_not_committed():
    for path in PAGES:
        for cell in guide_cells(path):
            if cell["cell_type"] == "code":
                tags = set(cell["metadata"].get("tags", []))
                assert {"hide-input", "hide-cell", "remove-input", "remove-cell"} & tags, "".join(cell["source"])[:80]
                assert cell["outputs"] == [] and cell["execution_count"] is None


def test_figure_cells_have_alt_text():
    for path in PAGES:
        for cell in guide_cells(path):
            if cell["cell_type"] == "code" and "guess_gallery" in "".join(cell["source"]):
                assert len(cell["metadata"]["mystnb"]["image"]["alt"]) > 40, path.name


def test_the_guide_replaces_seminar_md_in_the_toc():
    assert not (ROOT / "seminar.md").exists()
    assert "seminar" in toc_files()


def test_no_result_numbers_typed_into_the_text():
    # The prose may quote the paper's formulas (0.1 / 28) and sections (4.2), not results: no 0.062, no 2.4%.
    texts = [t for path in PAGES for t in guide_markdown(path)] + [(ROOT / "primer_fourier.md").read_text()]
    for text in texts:
        text = re.sub(r"https?://\S+", "", text).replace("arXiv:1312.6199", "").replace("Python 3.10", "")
        assert not re.findall(r"\b\d+\.\d+\s*%|\b\d+\.\d{2,}\b", text), text[:80]


# ---------------------------------------------------------------------------------------------- session 1's guess


@pytest.fixture(scope="module")
def guess() -> seminar.GuessRows:
    return seminar.guess_rows("N100 hidden 1 (sigmoid)", images=data.load_mnist(train=False)[0][:2000])


def test_guess_rows_are_chapter_5s_rows_shuffled(guess):
    from lib import units

    assert len(guess.rows) == 10 and all(len(r) == seminar.GUESS_K for r in guess.rows)
    assert sum(k.startswith("unit") for k in guess.kinds) == 5 and sum(k.startswith("direction") for k in guess.kinds) == 5
    assert [k.startswith("unit") for k in guess.kinds] != [True] * 5 + [False] * 5  # shuffled
    acts = units.layer_activations(zoo.load("N100-100-10"), 2, guess.images)
    for row, kind in zip(guess.rows, guess.kinds):
        if kind.startswith("unit"):
            expected = acts[:, int(kind.split()[1])].topk(seminar.GUESS_K).indices
            assert set(row.tolist()) == set(expected.tolist())
    key = guess.answer_key()
    assert list(key.index) == guess.row_names() and key["single unit"].sum() == 5
    again = seminar.guess_rows("N100 hidden 1 (sigmoid)", images=guess.images)
    assert again.kinds == guess.kinds  # seeded: the seminar and instructor pages show the same order
    order = seminar.guess_order(guess.layer, len(guess.rows))
    expected = [f"unit" if i < 5 else "direction" for i in order]
    assert [k.split()[0] for k in guess.kinds] == expected  # the answer key follows the order the gallery shows
    with pytest.raises(KeyError):
        seminar.guess_rows("no such layer")


def test_each_gallery_has_its_own_order():
    rows = {}
    for layer in seminar.GUESS_LAYERS:
        order = seminar.guess_order(layer, 10)
        assert sorted(order) == list(range(10)) and list(order) == list(seminar.guess_order(layer, 10))
        rows[layer] = frozenset(r for r in range(10) if order[r] < 5)  # the rows of the units
    assert len(set(rows.values())) == len(rows)  # solving one gallery gives no other away
    assert list(seminar.guess_order("Conv maps (pooled)", 10, order_seed=7)) == \
        list(__import__("numpy").random.default_rng(7).permutation(10))
    with pytest.raises(KeyError):
        seminar.guess_order("no such layer", 10)


def test_the_unlabelled_gallery_gives_nothing_away(guess):
    import matplotlib.pyplot as plt

    hidden = seminar.guess_gallery(guess, labelled=False)
    shown = seminar.guess_gallery(guess, labelled=True)
    try:
        hidden_text = " ".join(seminar.figure_texts(hidden)).lower()
        shown_text = " ".join(seminar.figure_texts(shown))
        assert "unit " not in hidden_text and "direction" not in hidden_text and "upper" not in hidden_text
        for kind in guess.kinds:
            assert kind.split()[0] + " " + kind.split()[1] not in hidden_text
            assert kind in shown_text
        for name in guess.row_names():
            assert name in hidden_text and name in shown_text
        # the same images in the same places
        def pixels(fig):
            return [ax.get_images()[0].get_array().sum() for ax in fig.axes if ax.get_images()]
        assert pixels(hidden) == pixels(shown)
    finally:
        plt.close(hidden)
        plt.close(shown)


# ---------------------------------------------------------------------------------------------- handouts


def test_each_handout_carries_the_sessions_goals_questions_reading_and_the_paper():
    titles = [t for t in guide_markdown(seminar.HANDOUTS) if "## Session " in t]
    assert [t.split("## ", 1)[1].splitlines()[0] for t in titles] == \
        [seminar.session_title(n) for n in sorted(seminar.ASSIGNMENTS)]
    assert all('<div class="handout-break"></div>' in t for t in titles)
    assert "break-before: page" in "\n".join(guide_markdown(seminar.HANDOUTS))
    for n in seminar.ASSIGNMENTS:
        text, cell = seminar.handout(n), session_cells()[n]
        assert seminar.PAPER_URL in text and seminar.paper_line(cell) in text
        assert seminar.bold_block(cell, "Questions for discussion") in text
        assert seminar.prerequisite(cell, "Read") in text and seminar.prerequisite(cell, "Run before") in text
        assert seminar.assignment(n) in text
        assert "Expected answers" not in text
        goals = seminar.bold_block(cell, "Learning goals")
        assert goals.splitlines()[-1].strip() in text


def test_handout_parsers():
    cell = ("## Session 9: x\n\n**Paper:** Section 4.3 and\nTable 5. **Book:** b.\n\n**Learning goals.** After\n\n- a\n\n"
            "**Prerequisites.**\n\n- *Read:* the paper;\n  chapter 6.\n- *Run before:* chapter 6.\n\n**Figure.** f")
    assert seminar.paper_line(cell) == "Section 4.3 and Table 5."
    assert seminar.bold_block(cell, "Learning goals") == "After\n\n- a"
    assert seminar.prerequisite(cell, "Read") == "the paper; chapter 6."
    assert seminar.prerequisite(cell, "Run before") == "chapter 6."
    with pytest.raises(ValueError):
        seminar.bold_block(cell, "Numbers at hand")


# ---------------------------------------------------------------------------------------------- parsers

EXERCISES = """## Summary

Some text.

## Exercises

1. First exercise,
   continued on a second line.
2. **Second.** With $\\lambda$.

## Appendix

3. Not an exercise.
"""


def test_exercises_in_reads_the_list_under_the_heading_only():
    assert seminar.exercises_in(EXERCISES) == {1: "First exercise, continued on a second line.",
                                               2: "**Second.** With $\\lambda$."}


@pytest.mark.parametrize("text, message", [
    ("## Summary\n\n1. a\n", "no '## Exercises' heading"),
    ("## Exercises\n\nNo list.\n", "no numbered list"),
    ("## Exercises\n\n1. a\n3. b\n", "not numbered 1, 2"),
    ("## Exercises\n\n1. a\n1. b\n", "listed twice"),
])
def test_exercises_in_rejects_bad_lists(text, message):
    with pytest.raises(ValueError, match=message):
        seminar.exercises_in(text)


def test_cited_exercises_reads_every_form():
    text = ("Assign chapter 2, exercise 3 and Chapter 5, exercises 1, 2 and 4; chapter 6,\nexercise 1. "
            "Not 'chapter 2' alone, nor 'exercise 7'.")
    assert seminar.cited_exercises(text) == [(2, 3), (5, 1), (5, 2), (5, 4), (6, 1)]
    assert seminar.cited_exercises("no references here") == []


def test_missing_exercises_finds_what_the_chapters_lack():
    real = seminar.chapter_exercises(1)
    assert seminar.missing_exercises([(1, 1), (1, len(real) + 1), (99, 1)]) == [(1, len(real) + 1), (99, 1)]


def test_chapter_notebook_and_its_exercises():
    assert seminar.chapter_notebook(3).name.startswith("03_")
    with pytest.raises(FileNotFoundError):
        seminar.chapter_notebook(99)
    with pytest.raises(ValueError):
        seminar.chapter_notebook(0)
    for chapter in range(1, 7):
        assert len(seminar.chapter_exercises(chapter)) >= 2


def test_assignment_prints_the_chapters_own_text():
    text = seminar.assignment(2)
    for chapter, number in seminar.ASSIGNMENTS[2]:
        assert f"**Chapter {chapter}, exercise {number}.** {seminar.exercise_copy(chapter, number)}" in text
    with pytest.raises(KeyError):
        seminar.assignment(99)
    with pytest.raises(ValueError, match="does not print"):
        seminar.assignment(2, page=seminar.HANDOUTS)


ASSIGNED = sorted({pair for pairs in seminar.ASSIGNMENTS.values() for pair in pairs})


def test_exercise_copies_name_the_section_instead_of_above():
    for (chapter, number), rules in seminar.REFERENCES.items():
        original = seminar.chapter_exercises(chapter)[number]
        for old, new, heading in rules:
            assert old in original, f"chapter {chapter}, exercise {number} no longer says {old!r}"
            page = f"chapters/{seminar.chapter_notebook(chapter).stem}"
            assert seminar.heading_id(heading) in seminar.heading_ids(page)
    for chapter, number in ASSIGNED:
        copy = seminar.exercise_copy(chapter, number)
        assert seminar.broken_section_links(copy) == [], (chapter, number)
        rest = copy
        for allowed in seminar.NOT_REFERENCES.get((chapter, number), ()):
            assert allowed in rest
            rest = rest.replace(allowed, "")
        assert not re.findall(r"\b(?:above|below)\b", rest), (chapter, number, copy)
        assert not seminar.CONSTANT.findall(copy), (chapter, number, copy)  # no `N_TEST`: its value instead
        assert all("::" in m.group(2) for m in seminar.GLUE_ROLE.finditer(copy)), (chapter, number, copy)


def test_exercise_copy_rewrites_glue_constants_and_references(monkeypatch):
    text = ("With `N_TEST` images and {glue:text}`n_test` of them, `N_NOTE` and `FLAG` stay, "
            "{glue:text}`other` and {glue}`fig` come from the chapter; see the table above.")
    monkeypatch.setattr(seminar, "chapter_exercises", lambda chapter: {1: text})
    monkeypatch.setattr(seminar, "chapter_constants", lambda chapter: {"N_TEST": 1000, "FLAG": True})
    monkeypatch.setattr(seminar, "chapter_glue_values", lambda chapter: {"n_test": "1,000"})
    heading = "Table 4: cross-training-set generalisation, and magnified examples"
    monkeypatch.setitem(seminar.REFERENCES, (3, 1), (("the table above", "the table of chapter 3's {section}", heading),))
    copy = seminar.exercise_copy(3, 1)
    assert copy.startswith("With 1,000 images and 1,000 of them, `N_NOTE` and `FLAG` stay, ")
    assert "{glue:text}`/chapters/03_transfer.ipynb::other:s`" in copy
    assert "{glue}`/chapters/03_transfer.ipynb::fig`" in copy
    anchor = "table-4-cross-training-set-generalisation-and-magnified-examples"
    assert f'the table of chapter 3\'s section "<a href="chapters/03_transfer.html#{anchor}">{heading}</a>".' in copy


def test_chapter_constants_and_glue_values_read_the_chapters_code():
    constants = seminar.chapter_constants(3)
    assert isinstance(constants["N_TEST"], int) and isinstance(constants["N_TRAIN"], int)
    glued = seminar.chapter_glue_values(3)
    if "n_test" in glued:  # the chapter glues its size as f"{N_TEST:,}"
        assert glued["n_test"] == f"{constants['N_TEST']:,}"
    assert f"{constants['N_TEST']:,} images" in seminar.exercise_copy(3, 3)


# ---------------------------------------------------------------------------------------------- glossary links


def test_the_linked_terms_exist_in_the_glossary_once_each():
    entries = seminar.glossary_entries()
    names = {n.lower(): e for e in entries for n in e}
    assert ("certified radius",) in entries and ("P1", "P2") in entries
    linked = [name for name, _ in seminar.GLOSSARY_PHRASES]
    assert all(name.lower() in names for name in linked), [n for n in linked if n.lower() not in names]
    assert len({names[name.lower()] for name in linked}) == len(linked)  # one name per glossary entry
    for name, pattern in seminar.GLOSSARY_PHRASES:
        assert seminar.PHRASES[name].fullmatch(name), name  # a term's own name is one of its phrases


def test_link_terms_links_first_uses_only():
    text, done = seminar.link_terms("The pool beats the pool. Clipped noise, then clipped noise; P1 and P2.")
    assert text == ("The {term}`pool` beats the pool. {term}`Clipped noise <clipped noise>`, then clipped noise; "
                    "{term}`P1` and P2.")
    assert {"pool", "clipped noise", "P1"} <= done
    again, _ = seminar.link_terms("the pool again", linked=done)
    assert again == "the pool again"
    # an existing role of a linked term is moved to the first use; other roles stay
    text, _ = seminar.link_terms("a certified radius, and the {term}`certified radius`; {term}`c search`")
    assert text == "a {term}`certified radius`, and the certified radius; {term}`c search`"
    assert seminar.link_terms(text)[0] == text  # idempotent


@pytest.mark.parametrize("protected", [
    "`the pool`", "$pool$", "## The pool", '"the pool"', '<a href="x.html#pool">the pool</a>', "[the pool](x.html)",
    "{doc}`the pool <x>`", "```python\npool = 1\n```", "the pooling and pooled stddev's",
])
def test_link_terms_leaves_code_math_headings_quotes_and_links_alone(protected):
    text, _ = seminar.link_terms(protected)
    assert text.replace("{term}`pooled stddev`", "pooled stddev") == protected


def test_every_page_links_each_glossary_term_at_its_first_use_only():
    for page in PAGES:
        assert seminar.unlinked_uses(page) == [], page.name
        roles = [seminar._entry_of().get((m.group(2) or m.group(1)).strip().lower(), m.group(0))
                 for text in seminar.linked_page(page) for m in seminar.TERM_ROLE.finditer(text)]
        assert len(roles) == len(set(roles)), (page.name, sorted(r for r in roles if roles.count(r) > 1))
    glossary = {n.lower() for e in seminar.glossary_entries() for n in e}
    for page in PAGES:
        for text in seminar.linked_page(page):
            for m in seminar.TERM_ROLE.finditer(text):
                assert (m.group(2) or m.group(1)).strip().lower() in glossary, m.group(0)
    handouts = "\n".join(seminar.linked_page(seminar.HANDOUTS))
    for term in ("optimality gap", "clipped noise", "P1", "pool", "validation split", "certified radius", "probe",
                 "FGSM", "magnified"):
        assert f"<{term}>`" in handouts or f"`{term}`" in handouts, term
    assert seminar.unlink_terms(seminar.handout(3, page=seminar.HANDOUTS)) == seminar.unlink_terms(seminar.handout(3))


def test_plan_minutes():
    table = "Intro\n\n| Minutes | Block |\n|---|---|\n| 10 | a |\n| 80 | b |\n\nAfter.\n| 5 | not the plan |\n"
    assert seminar.plan_minutes(table) == [10, 80]
    with pytest.raises(ValueError, match="no plan table"):
        seminar.plan_minutes("| Block | Minutes |\n|---|---|\n| a | 10 |\n")
    with pytest.raises(ValueError, match="whole number"):
        seminar.plan_minutes("| Minutes | Block |\n|---|---|\n| ten | a |\n")


# ---------------------------------------------------------------------------------------------- numbers


def test_paired_and_its_checks():
    ours = pd.DataFrame({"a": [1.0, 2.25]}, index=["x", "y"])
    ref = pd.DataFrame({"a": [1.5, 2.0]}, index=["x", "y"])
    assert seminar.paired(ours, ref).to_dict() == {"a": {"x": "1.0 (1.5)", "y": "2.2 (2.0)"}}
    with pytest.raises(ValueError):
        seminar.paired(ours, ref.rename(index={"y": "z"}))


def test_table1_selections():
    t1 = pd.DataFrame([{"model": "m", "paper name": "M", "train error %": 1.0, "paper train %": 0.5,
                        "train gap (pp)": 0.5, "test error %": 2.0, "paper test %": 2.5, "test gap (pp)": -0.5,
                        "reading": "r", "images": 10, "misclassified": 0, "distortion": 0.05,
                        "paper distortion": 0.06, "distortion ratio book/paper": 0.83}])
    assert list(seminar.table1_errors(t1).columns) == ["paper name", "train error %", "paper train %",
                                                       "train gap (pp)", "test error %", "paper test %",
                                                       "test gap (pp)"]
    assert seminar.table1_distortions(t1).loc["m", "distortion"] == 0.05


def test_table3_records_and_half_gaps_follow_the_records():
    records = seminar.table3_records()
    gaps = seminar.half_gaps()
    assert list(records.index) == list(paper.TABLE3_MODELS) == list(gaps.index)
    for name in paper.TABLE3_MODELS:
        rec = zoo.record(name)
        other = gaps.loc[name, "other half"]
        assert other != rec["spec"]["train_on"]
        assert gaps.loc[name, "gap (pp)"] == pytest.approx(rec[f"{other}_error"] - rec["test_error"], abs=1e-3)
        p, q = rec[f"{other}_error"] / 100, rec["test_error"] / 100
        se = 100 * math.sqrt(p * (1 - p) / 30_000 + q * (1 - q) / 10_000)
        assert gaps.loc[name, "SE of gap (pp)"] == pytest.approx(se, abs=1e-3)
        assert records.loc[name, "paper: test error %"] == paper.TABLE3[name]["test_error"]
        assert records.loc[name, "error on P1 %"] == rec["P1_error"]
        within = abs(gaps.loc[name, "gap (pp)"]) <= 2 * gaps.loc[name, "SE of gap (pp)"]
        assert gaps.loc[name, "within 2 SE"] == ("yes" if within else "no")
    assert not [c for c in records.columns if "_" in c]  # headers in words, not the records' keys


def test_noise_error_without_noise_is_the_clean_error():
    result = seminar.noise_error("softmax-1e-4", 0.0, n=200)
    assert result["noisy error %"] == result["clean error %"]
    assert seminar.noise_error("softmax-1e-4", 1.0, n=200)["noisy error %"] > result["clean error %"]


def test_clipped_noise_bias_matches_the_half_normal_mean():
    bias = seminar.clipped_noise_bias(0.3, draws=20, n=200)
    assert bias["theory stddev/sqrt(2 pi)"] == pytest.approx(0.3 / math.sqrt(2 * math.pi))
    assert bias["measured on black pixels"] == pytest.approx(bias["theory stddev/sqrt(2 pi)"], rel=0.02)


def test_paper_ranking_says_the_order_in_words(monkeypatch):
    for version in paper.ADVERSARIAL_TRAINING:
        sentence = seminar.paper_ranking(version)
        ref = paper.ADVERSARIAL_TRAINING[version]
        assert f"{ref['adversarial pool']:g}% with the pool" in sentence and "True" not in sentence
    monkeypatch.setitem(paper.ADVERSARIAL_TRAINING, "x", {"weight decay": 1.0, "dropout": 2.0, "adversarial pool": 3.0})
    assert seminar.paper_ranking("x").endswith("not in the order pool, dropout, weight decay; weight decay is lowest.")
    monkeypatch.setitem(paper.ADVERSARIAL_TRAINING, "y", {"weight decay": 3.0, "dropout": 2.0, "adversarial pool": 1.0})
    assert seminar.paper_ranking("y") == ("The paper's y: test error 1% with the pool, 2% with dropout, 3% with weight "
                                          "decay alone, so the pool beats dropout, which beats weight decay.")
    with pytest.raises(KeyError):
        seminar.paper_ranking("v9")


def test_table4_cells_counts_both_blocks():
    cells = seminar.table4_cells()
    models = len(paper.TABLE4_COLUMNS)
    assert cells == {"adversarial": models * (models - 1), "magnified": models * (models - 1)}
    assert sum(cells.values()) == 12


def test_decay_fit_seconds_are_the_committed_records():
    record = json.loads((ROOT / "data" / "results" / "decay_readings.json").read_text())
    seconds = seminar.decay_fit_seconds()
    expected = {f["model"]: f["seconds"] for f in record["fits"] if f["reading"] == zoo.PAPER_DECAY}
    assert seconds.to_dict() == expected and len(expected) == 3
    with pytest.raises(KeyError):
        seminar.decay_fit_seconds("no such reading")


def test_adversarial_training_records_and_differences():
    records = seminar.adversarial_training_records()
    assert list(records.index) == list(adversarial_sweep.METHODS)
    assert (records["seeds"] == len(adversarial_sweep.SEEDS)).all() and (records["sd"] >= 0).all()
    mean = records["test error % (mean)"]
    diff = seminar.pool_differences(records)
    assert diff["weight decay"] == pytest.approx(mean["adversarial pool"] - mean["weight decay"], abs=0.01)
    assert diff["dropout"] == pytest.approx(mean["adversarial pool"] - mean["dropout"], abs=0.01)
    p = mean["weight decay"] / 100
    assert seminar.test_error_se(records) == pytest.approx(100 * math.sqrt(p * (1 - p) / 10_000))


def test_lipschitz_numbers():
    column = "upper bound (product of the layers' bounds)"
    bounds = report.lipschitz_zoo(names=("softmax-1e-4", "N100-100-10")).set_index("model")
    assert list(bounds.index) == ["softmax-1e-4", "N100-100-10"] and (bounds[column] > 0).all()
    # a softmax model is one linear layer: its bound is that layer's largest singular value
    weight = [m for m in zoo.load("softmax-1e-4") if hasattr(m, "weight")][0].weight
    assert bounds.loc["softmax-1e-4", column] == pytest.approx(
        float(__import__("torch").linalg.matrix_norm(weight, ord=2)), rel=1e-4)
    with pytest.raises(ValueError, match="zoo models"):
        report.lipschitz_zoo(names=("no-such-model",))
    slopes = seminar.sigmoid_slopes("N100-100-10", n=50)
    assert len(slopes) == 2 and (slopes["max slope"] <= 0.25).all()
    assert (slopes["mean slope"] < slopes["max slope"]).all()
    decay = seminar.decay_bounds(n=50)
    assert list(decay.index) == list(paper.TABLE1_MODELS[:3])
    assert decay["global bound L"].is_monotonic_decreasing  # stronger decay, smaller weights
    with pytest.raises(ValueError, match="no sigmoid"):
        seminar.sigmoid_slopes("softmax-1e-4", n=10)


def test_table2_paired_has_the_paper_in_brackets():
    from lib import table1

    frame = seminar.table2_paired(table1.chosen_rule())
    assert list(frame.index) == list(paper.TABLE1_MODELS) == list(frame.columns)
    for name in paper.TABLE1_MODELS:
        for column, value in zip(paper.TABLE1_MODELS, paper.TABLE2[name][0]):
            assert frame.loc[name, column].endswith(f"({value:.1f})")
    assert len(data.load_mnist(train=False)[1]) == 10_000  # the test-set size the SE checks above assume
