"""The conformance statements in `tests/conformance/README.md` and the tests that cite them agree.

A test cites statement n as `C` followed by n (a word of its own) anywhere in a test file, or as a
`_c` suffix of the same number in a test function's name.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).parent
README = TESTS / 'conformance' / 'README.md'
NOT_COVERED = 'not yet covered'

STATEMENT = re.compile(r'^- C(\d+)\. \S')
PROOF = re.compile(r'^  - `([^`]+)::(\w+)`$')
MARKER = re.compile(rf'^  - {NOT_COVERED}\b')
CITATION = re.compile(r'\bC(\d{1,2})\b')
NAME_CITATION = re.compile(r'_c(\d{1,2})(?=_|$)')


@dataclass
class Statement:
    number: int
    proofs: list[tuple[str, str]] = field(default_factory=list)
    not_covered: bool = False


def statements() -> dict[int, Statement]:
    """The statements of the README in order, each with the tests listed under it."""
    found: dict[int, Statement] = {}
    current: Statement | None = None
    for line in README.read_text().splitlines():
        if match := STATEMENT.match(line):
            number = int(match[1])
            assert number not in found, f'C{number} is listed twice'
            current = found[number] = Statement(number)
        elif current is not None and (match := PROOF.match(line)):
            current.proofs.append((match[1], match[2]))
        elif current is not None and MARKER.match(line):
            current.not_covered = True
    return found


def python_files() -> list[Path]:
    return sorted(path for path in TESTS.rglob('*.py') if path != Path(__file__))


def cited_by(node: ast.FunctionDef | ast.AsyncFunctionDef) -> set[int]:
    """What a test cites in its name or docstring."""
    in_name = {int(n) for n in NAME_CITATION.findall(node.name)}
    return in_name | {int(n) for n in CITATION.findall(ast.get_docstring(node) or '')}


def citations() -> dict[int, set[str]]:
    """Every statement number cited anywhere in the test files, with the files citing it."""
    found: dict[int, set[str]] = {}
    for path in python_files():
        where = str(path.relative_to(TESTS))
        text = path.read_text()
        numbers = {int(n) for n in CITATION.findall(text)}
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith('test_'):
                numbers |= cited_by(node)
        for number in numbers:
            found.setdefault(number, set()).add(where)
    return found


def test_the_readme_lists_c1_to_c19_in_order() -> None:
    assert list(statements()) == list(range(1, 20))


def test_every_citation_names_a_listed_statement() -> None:
    listed = statements()
    unknown = {f'C{number}': sorted(files) for number, files in citations().items() if number not in listed}
    assert not unknown, f'cited but not in {README.name}: {unknown}'


def test_every_statement_is_cited_or_marked_not_yet_covered() -> None:
    cited = citations()
    for statement in statements().values():
        if statement.not_covered:
            assert not statement.proofs, f'C{statement.number} is {NOT_COVERED!r} yet lists tests'
        else:
            assert statement.number in cited, f'no test cites C{statement.number}'
            assert statement.proofs, f'C{statement.number} lists no test (or say {NOT_COVERED!r})'


def test_every_listed_test_exists_and_cites_its_statement() -> None:
    problems: list[str] = []
    for statement in statements().values():
        for file, name in statement.proofs:
            path = TESTS / file
            if not path.is_file():
                problems.append(f'C{statement.number}: {file} does not exist')
                continue
            tests = {
                node.name: node
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            if name not in tests:
                problems.append(f'C{statement.number}: {file} has no {name}')
            elif statement.number not in cited_by(tests[name]):
                problems.append(f'C{statement.number}: {file}::{name} does not cite it in its name or docstring')
    assert not problems, '\n'.join(problems)
