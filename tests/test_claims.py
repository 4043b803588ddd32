"""The README's numbers are the docs' numbers: docs/claims.md has a row for each, saying what it is, the command
and the seed or run that made it, and the page it links shows it with the same digits (issue 33)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = ROOT / "docs" / "claims.md"
# a decimal number (0.862, 1.01M, 2.0 s), a percentage (97.2%, 10%) or a speed factor (88x); not a dotted version
# or address (2.13.0, 127.0.0.1); signs are not part of it (−0.012 and -0.012 are 0.012)
NUMBER = re.compile(r"(?<![\w.])(?:\d+(?:\.\d+)?%|\d+x\b|\d+\.\d+(?!\.?\d))")
ROW_FORMAT = "| the README's numbers | what they are | the command | seed / run | [page.md](page.md) |"


def numbers(text: str) -> set[str]:
    return set(NUMBER.findall(text))


def readme_numbers() -> set[str]:
    """The numbers README.md states in its prose and tables (code blocks hold commands, not claims)."""
    return numbers(re.sub(r"```.*?```", "", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S))


def claim_rows() -> list[tuple[str, set[str], list[str]]]:
    """Each table row of docs/claims.md: (the row, the numbers of its first cell, the pages it links)."""
    rows = []
    for line in CLAIMS.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) < 5 or set(cells[0]) <= set("-") or cells[0] == "README numbers":
            continue
        pages = re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]*)?\)", cells[-1])
        rows.append((line, numbers(cells[0]), pages))
    return rows


def test_every_number_the_readme_states_has_a_row_in_claims():
    claimed = set().union(*(found for _, found, _ in claim_rows()))
    missing = sorted(readme_numbers() - claimed, key=lambda n: float(n.rstrip("%x")))
    assert not missing, (
        f"README.md states {missing}, which docs/claims.md does not account for: add a row for each statement "
        f"that carries them, `{ROW_FORMAT}`, linking the docs page that shows the measurement with the same digits "
        "(its table and command), or take the number out of the README"
    )


def test_each_claimed_number_is_on_the_page_it_links_with_the_same_digits():
    for line, found, pages in claim_rows():
        if not found:
            continue  # whole minutes and counts: not checked
        assert pages, f"docs/claims.md: this row links no docs page: {line}"
        shown = set().union(*(numbers((ROOT / "docs" / page).read_text(encoding="utf-8")) for page in pages))
        absent = sorted(found - shown)
        assert not absent, (
            f"docs/claims.md says {absent} are measured in {pages}, which do not show them with those digits: "
            f"fix the number (the README's and this row's) to the page's, or link the page that has it. Row: {line}"
        )


def test_claims_has_no_row_for_a_number_the_readme_no_longer_states():
    stated = readme_numbers()
    for line, found, _ in claim_rows():
        stale = sorted(found - stated)
        assert not stale, (
            f"docs/claims.md: README.md no longer states {stale}; update or remove the row: {line}"
        )
