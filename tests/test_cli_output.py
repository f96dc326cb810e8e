"""What the CLI prints: escaped when it reaches a terminal, whole values when piped (TSV)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from cli import csvfile, output
from cli.errors import ApiError
from cli.keys import _key_panel, _keys_table, read_rows
from cli.main import State, cli

EVIL = "\x1b[2J\x1b[HAll good\u202eexe.png\x07[bold]x[/bold]"
SECRET = "pw-abcdefghijkl-" + "S" * 40


def key(name: str = EVIL, **extra: Any) -> dict[str, Any]:
    return {
        "object": "key", "key_id": "abcdefghijkl", "prefix": "pw-abcdefghijkl", "name": name, "status": "active",
        "owner": {"sub": "sub-1", "email": "o@example.com"}, "allowed_models": None, "monthly_budget_usd": None,
        "rpm_limit": None, "tpm_limit": None, "expires_at": None, "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-01T00:00:00Z", "revoked_at": None, "last_used_at": None,
        "previous_secret_valid_until": None, "metadata": {"team": EVIL}, "import_id": None, "admin_limits": {},
        **extra,
    }  # fmt: skip


class FakeClient:
    """The admin API as canned answers (what a hostile key name looks like on the wire)."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers

    def get(self, path: str, params: Any = None) -> Any:
        return self._answer(path)

    def post(self, path: str, body: Any = None) -> Any:
        return self._answer(path)

    def pages(self, path: str, params: Any = None) -> Iterator[dict[str, Any]]:
        yield self._answer(path)

    def _answer(self, path: str) -> Any:
        answer = self.answers[path]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    monkeypatch.setattr(State, "client", lambda self: FakeClient(answers))
    return answers


def terminal_run(monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    """Run the CLI as if stdout were a terminal; return everything it wrote."""
    monkeypatch.setattr(output, "is_terminal", lambda: True)
    buffer = io.StringIO()
    monkeypatch.setattr(output, "stdout", lambda: Console(file=buffer, force_terminal=True, width=500))
    monkeypatch.setattr(output, "stderr", lambda: Console(file=buffer, force_terminal=True, width=500))
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return buffer.getvalue() + result.output


def assert_harmless(text: str, *, folded: bool = False) -> None:
    for raw in ("\x1b[2J", "\x1b[H", "\u202e", "\x07"):
        assert raw not in text, repr(raw)
    if not folded:  # a folded cell splits the text across lines
        assert "\\x1b[2J" in text and "\\u202e" in text and "[bold]x[/bold]" in text


def test_safe_shows_what_would_drive_a_terminal() -> None:
    assert output.safe("a\x1b[2Jb\u202ec\x00\x9b\u2028") == "a\\x1b[2Jb\\u202ec\\x00\\x9b\\u2028"
    assert output.safe("Café ✓ 名前 👩‍💻") == "Café ✓ 名前 👩‍💻"


@pytest.mark.parametrize(
    ("args", "answers"),
    [
        (("keys", "list"), {"/admin/keys": {"object": "list", "data": [key()], "next_cursor": None}}),
        (("keys", "show", "abcdefghijkl"), {"/admin/keys/abcdefghijkl": key()}),
        (
            ("keys", "audit", "abcdefghijkl"),
            {"/admin/keys/abcdefghijkl/audit": {"data": [{
                "at": "2026-11-01T00:00:00Z", "key_id": "abcdefghijkl", "action": "revoked", "id": "e1",
                "actor": {"kind": "user", "email": EVIL, "sub": "s"}, "changes": {"name": {"from": None, "to": EVIL}},
                "details": {"reason": EVIL},
            }]}},
        ),
        (("report", "show", "2026-11-01"), {"/admin/reports/daily/2026-11-01": {"notification": f"Top key: {EVIL}\n"}}),
        (
            ("usage", "--csv"),
            {"/admin/usage": {"data": [{"group": "k", "name": EVIL, "requests": 1, "input_tokens": 1,
                                        "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0,
                                        "cost_usd": "0"}]}},
        ),
        (("keys", "show", "abcdefghijkl"), {"/admin/keys/abcdefghijkl": ApiError(404, {"message": f"No key {EVIL}"})}),
    ],
)  # fmt: skip
def test_every_output_escapes_untrusted_text_on_a_terminal(
    gateway: dict[str, Any], monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], answers: dict[str, Any]
) -> None:
    gateway.update(answers)
    assert_harmless(terminal_run(monkeypatch, *args))


def test_a_table_on_a_terminal_folds_long_values_but_keeps_them_escaped() -> None:
    console = Console(width=60, record=True, force_terminal=True)
    console.print(_keys_table([key()]))
    assert_harmless(console.export_text(styles=True), folded=True)


def test_piped_tables_are_tsv_with_whole_values(gateway: dict[str, Any]) -> None:
    long_name = "n" * 150
    gateway["/admin/keys"] = {"object": "list", "data": [key(long_name), key(EVIL)], "next_cursor": None}
    result = CliRunner().invoke(cli, ["keys", "list"], catch_exceptions=False)
    lines = result.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["key id", "name", "owner"]
    assert lines[1].split("\t")[1] == long_name  # never wrapped at 80 columns
    assert lines[2].split("\t")[1] == output.safe(EVIL)
    assert all(line.count("\t") == 8 for line in lines)
    assert "\x1b" not in result.stdout


def test_a_piped_import_prints_each_secret_whole_on_its_row(gateway: dict[str, Any], tmp_path: Path) -> None:
    rows = [{"id": f"row-{n}"} for n in range(3)]
    (tmp_path / "k.json").write_text(json.dumps(rows))
    results = [{"row": n, "id": f"row-{n}", "status": "created", "key": key("x"), "secret": SECRET} for n in range(3)]
    gateway["/admin/keys/import"] = {"results": results}
    result = CliRunner().invoke(cli, ["keys", "import", str(tmp_path / "k.json")], catch_exceptions=False)
    lines = result.stdout.splitlines()
    assert lines[0] == "row\tid\tkey id\tsecret"
    assert [line.split("\t")[3] for line in lines[1:]] == [SECRET] * 3


def test_the_key_panel_is_field_value_rows_when_piped() -> None:
    tsv = _key_panel(key("plain")).tsv()
    assert "name\tplain\n" in tsv and "metadata\tteam=" + output.safe(EVIL) + "\n" in tsv


# keys import --secrets-out and keys export --output never destroy an existing file


def import_answer(ids: list[str]) -> dict[str, Any]:
    return {"results": [{"row": n, "id": i, "status": "created", "key": key("x"), "secret": SECRET + str(n)}
                        for n, i in enumerate(ids)]}  # fmt: skip


class CountingImport(FakeClient):
    """Answers each import batch in turn; a batch answer that is an exception is raised."""

    def __init__(self, batches: list[Any]) -> None:
        super().__init__({})
        self.batches = list(batches)
        self.posts = 0

    def post(self, path: str, body: Any = None) -> Any:
        self.posts += 1
        answer = self.batches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return import_answer([row["id"] for row in body["keys"]])


def test_secrets_out_never_overwrites_an_existing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    client = CountingImport([None])
    monkeypatch.setattr(State, "client", lambda self: client)
    (tmp_path / "k.json").write_text(json.dumps([{"id": "a"}]))
    secrets = tmp_path / "secrets.csv"
    secrets.write_text("id,key_id,secret\nearlier,abcdefghijkl,pw-precious\n")
    result = CliRunner().invoke(cli, ["keys", "import", str(tmp_path / "k.json"), "--secrets-out", str(secrets)])
    assert result.exit_code == 1 and "already exists" in result.output
    assert client.posts == 0  # refused before any key was created
    assert "pw-precious" in secrets.read_text()


def test_secrets_are_on_disk_batch_by_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN an import whose second batch fails (the network, the gateway)
    from cli.errors import NetworkError

    client = CountingImport([None, NetworkError("gone")])
    monkeypatch.setattr(State, "client", lambda self: client)
    (tmp_path / "k.json").write_text(json.dumps([{"id": f"r{n}"} for n in range(4)]))
    secrets = tmp_path / "secrets.csv"
    args = ["keys", "import", str(tmp_path / "k.json"), "--batch-size", "2", "--secrets-out", str(secrets)]
    result = CliRunner().invoke(cli, args)
    # THEN the first batch's secrets were kept, and the error says so
    assert result.exit_code == 1 and "2 keys were created" in result.output
    lines = secrets.read_text().splitlines()
    assert lines[0] == "id,key_id,secret" and [line.split(",")[0] for line in lines[1:]] == ["r0", "r1"]
    assert oct(secrets.stat().st_mode & 0o777) == "0o600"


def test_without_secrets_out_a_failed_import_still_prints_the_secrets_it_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cli.errors import NetworkError

    monkeypatch.setattr(State, "client", lambda self: CountingImport([None, NetworkError("gone")]))
    (tmp_path / "k.json").write_text(json.dumps([{"id": f"r{n}"} for n in range(4)]))
    result = CliRunner().invoke(cli, ["keys", "import", str(tmp_path / "k.json"), "--batch-size", "2"])
    assert result.exit_code == 1
    assert result.stdout.count(SECRET) == 2


def test_export_output_refuses_to_overwrite_without_force(gateway: dict[str, Any], tmp_path: Path) -> None:
    gateway["/admin/keys/export"] = {"data": [], "next_cursor": None}
    target = tmp_path / "secrets.csv"
    target.write_text("precious")
    refused = CliRunner().invoke(cli, ["keys", "export", "-o", str(target)])
    assert refused.exit_code == 1 and "--force" in refused.output and target.read_text() == "precious"
    forced = CliRunner().invoke(cli, ["keys", "export", "-o", str(target), "--force"])
    assert forced.exit_code == 0 and target.read_text().startswith("id,owner")


def test_duplicate_ids_are_reported_with_file_row_numbers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # GIVEN a CSV whose 2nd and 4th data rows (file lines 3 and 5) repeat the ids of lines 2 and 3
    client = CountingImport([None, None, None])
    monkeypatch.setattr(State, "client", lambda self: client)
    (tmp_path / "k.csv").write_text("id,name\na,one\nb,two\nc,three\nb,again\na,again\n")
    args = ["keys", "import", str(tmp_path / "k.csv"), "--batch-size", "2", "--json"]
    report = json.loads(CliRunner().invoke(cli, args).stdout)
    # THEN every row number, in results and in messages, is the file's line; duplicates are not sent
    errors = {r["row"]: r["error"]["message"] for r in report["results"] if r["status"] == "error"}
    assert errors == {5: "Duplicate id 'b' (also in row 3).", 6: "Duplicate id 'a' (also in row 2)."}
    assert [r["row"] for r in report["results"] if r["status"] == "created"] == [2, 3, 4]
    assert client.posts == 2


def test_owners_are_shown_by_email(gateway: dict[str, Any]) -> None:
    gateway["/admin/owners/me/budget"] = {
        "object": "owner_budget", "owner": "0f1e-sub", "owner_email": "alice@example.com", "period": "2026-11",
        "monthly_budget_usd": "10", "spent_usd": "1", "remaining_usd": "9",
    }  # fmt: skip
    gateway["/admin/usage"] = {
        "object": "usage", "from": "2026-11-01", "to": "2026-11-02", "group_by": "owner", "scope": "all",
        "data": [{"group": "0f1e-sub", "owner_email": "alice@example.com", "requests": 1, "input_tokens": 1,
                  "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0, "cost_usd": "1"}],
        "total": {"requests": 1, "input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 0,
                  "cache_write_tokens": 0, "cost_usd": "1"},
    }  # fmt: skip
    from cli.usage import _budget_table

    usage = CliRunner().invoke(cli, ["usage", "--group-by", "owner"], catch_exceptions=False).stdout
    assert usage.splitlines()[1].startswith("alice@example.com\t") and "0f1e-sub" not in usage
    assert CliRunner().invoke(cli, ["budget", "show"], catch_exceptions=False).exit_code == 0
    title = _budget_table(gateway["/admin/owners/me/budget"]).title or ""
    assert "alice@example.com" in title and "0f1e-sub" not in title


# Every CSV the CLI writes defuses what a spreadsheet would run (one writer: cli/csvfile.py)

FORMULAS = ['=HYPERLINK("https://evil.example","Click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx",
            "'=already quoted"]  # fmt: skip


def spreadsheet_cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def assert_no_cell_runs(rows: list[list[str]]) -> None:
    for row in rows:
        for cell in row:
            assert not re.match(r"[=+@\t\r]", cell) and not re.match(r"-(?!\d+(\.\d+)?$)", cell), cell


@pytest.mark.parametrize("name", FORMULAS)
def test_usage_csv_defuses_formulas(gateway: dict[str, Any], name: str) -> None:
    gateway["/admin/usage"] = {"data": [{"group": "k", "name": name, "requests": 1, "input_tokens": 1,
                                         "output_tokens": -1, "cache_read_tokens": 0, "cache_write_tokens": 0,
                                         "cost_usd": "-0.25"}]}  # fmt: skip
    result = CliRunner().invoke(cli, ["usage", "--csv"], catch_exceptions=False)
    [header, row] = spreadsheet_cells(result.stdout)
    assert_no_cell_runs([header, row])
    assert row[1] == "'" + name
    assert row[4] == "-1" and row[7] == "-0.25"  # numbers stay numbers


def test_keys_export_defuses_formulas_and_imports_back_as_the_same_names(
    gateway: dict[str, Any], tmp_path: Path
) -> None:
    rows = [{"id": name, "owner": "@owner", "name": name, "metadata": {"note": name}} for name in FORMULAS]
    gateway["/admin/keys/export"] = {"data": rows, "next_cursor": None}
    target = tmp_path / "keys.csv"
    assert CliRunner().invoke(cli, ["keys", "export", "-o", str(target)]).exit_code == 0
    cells = spreadsheet_cells(target.read_text())
    assert_no_cell_runs(cells)
    assert [row[2] for row in cells[1:]] == ["'" + name for name in FORMULAS]
    assert [row for _, row in read_rows(target, "csv")] == rows


def test_secrets_out_defuses_formulas(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(State, "client", lambda self: CountingImport([None]))
    (tmp_path / "k.json").write_text(json.dumps([{"id": FORMULAS[0]}]))
    secrets = tmp_path / "secrets.csv"
    CliRunner().invoke(cli, ["keys", "import", str(tmp_path / "k.json"), "--secrets-out", str(secrets)])
    cells = spreadsheet_cells(secrets.read_text())
    assert_no_cell_runs(cells)
    assert cells[1][0] == "'" + FORMULAS[0]


def test_the_csv_rule_is_the_consoles() -> None:
    # The console's download (dom.js: toCsv) and cli/csvfile.py defuse the same cells the same way.
    dom = (Path(__file__).resolve().parent.parent / "chalicelib" / "console" / "static" / "dom.js").read_text()
    assert f"/{csvfile.FORMULA.pattern}/.test(text) && !/{csvfile.NUMBER.pattern}/.test(text)" in dom
    assert "text = `'${text}`" in dom


@pytest.mark.parametrize("name", [None, "", "   "])
def test_keys_create_needs_a_name_as_in_the_console(gateway: dict[str, Any], name: str | None) -> None:
    gateway["/admin/keys"] = {**key("x"), "secret": SECRET}  # what the gateway would answer
    args = ["keys", "create", "--budget", "1"] + ([] if name is None else ["--name", name])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "--name" in result.output and SECRET not in result.output
