"""The register of claims: every finding the library builds names a registered claim, and pages cannot disagree."""
import ast

import pytest

from lib import ROOT, claims, findings


def _finding_calls():
    for path in sorted((ROOT / "lib").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                yield path.name, node


def _literal_base(value: ast.expr) -> str | None:
    """The key's base where the source spells it out (a string or an f-string starting with text)."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return value.value.split(":")[0]
    if isinstance(value, ast.JoinedStr) and value.values and isinstance(value.values[0], ast.Constant):
        return value.values[0].value.split(":")[0]
    return None


def test_every_finding_the_library_builds_names_a_registered_claim():
    calls = list(_finding_calls())
    assert len(calls) > 40
    for name, node in calls:
        key = next((k.value for k in node.keywords if k.arg == "key"), None)
        assert key is not None, f"{name}:{node.lineno}: a Finding without key="
        base = _literal_base(key)
        if base is not None:  # a variable passed down from a helper's caller is checked there
            assert base in claims.REGISTER, f"{name}:{node.lineno}: {base!r} is not registered"


def test_helpers_pass_registered_keys():
    """The helpers that build findings (transfer's checks, the sweep's `beats`, units' tests) get literal keys."""
    source = "\n".join(p.read_text() for p in (ROOT / "lib").glob("*.py"))
    for base in ("t2-above-noise", "val-lbfgs-baseline", "unit-rows-coherent", "words-unit-rows"):
        assert f'"{base}' in source and base in claims.REGISTER


def test_register_entries_are_well_formed():
    with pytest.raises(ValueError, match="unknown kind"):
        claims.Claim("x", "4.2", "words", "vibe")
    with pytest.raises(ValueError, match="lower case"):
        claims.Claim("Table 1", "4.2", "words", "statement")
    assert claims.claim("min-distortion:N100-100-10").kind == "distortion"
    with pytest.raises(KeyError, match="not in the register"):
        claims.claim("made-up:x")


def test_a_claim_made_in_every_table_takes_its_section_from_the_case():
    assert claims.section("paper-numbers:Table 3/errors") == "Table 3"
    assert claims.section("paper-numbers:Table 5") == "Table 5"
    assert claims.section("paper-numbers") == "every table"
    assert claims.section("min-distortion:N100-100-10") == "4.2, Table 1"


def test_table_carries_each_verdict_and_refuses_unregistered_or_repeated_claims():
    found = [findings.Finding("a", "p", "b", True, key="zero-accuracy"),
             findings.Finding("c", "p", "d", None, "why", key="alexnet-units")]
    page = findings.table(found).to_html()
    assert claims.from_html(page) == [("zero-accuracy", "holds"), ("alexnet-units", "not tested")]
    assert "4.2, Table 1" in page  # the section, from the register
    with pytest.raises(KeyError, match="not in the register"):
        findings.table([findings.Finding("a", "p", "b", True, key="nowhere")])
    with pytest.raises(ValueError, match="judged twice"):
        findings.table([found[0], found[0]])


def test_disagreements_name_the_claim_and_the_pages():
    assert claims.disagreements({"a.html": [("zero-accuracy", "holds")], "b.html": [("zero-accuracy", "holds")]}) == []
    problems = claims.disagreements({"a.html": [("first-layer-unstable", "holds")],
                                     "b.html": [("first-layer-unstable", "does not hold"), ("nowhere", "holds")]})
    assert len(problems) == 2
    assert any("'nowhere' is not in the register" in p for p in problems)
    assert any("holds on a.html" in p and "does not hold on b.html" in p for p in problems)
