"""The shape of the SQL: every table has one owning file, and files call only the files above them.

Each file of current definitions says which tables it owns (`-- Owns: ...` in its header). Only the owner
INSERTs, UPDATEs or DELETEs a table; other concerns call the owner's functions. The one exception is the write
every app makes: anything may INSERT an alert or an event, as an app does. And sql/definitions.txt lists the
files in an order in which each file's functions and triggers call only functions of its own file or of files
above it, so the concerns form layers, not a loop.

Read from the files alone (no database): comments and string literals are left out, so a dynamic statement in a
string (a rule's query, a pg_cron command) is not taken for a write or a call.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"

# the writes of any app: raising an alert, recording an event
PUBLIC_INSERTS = {"monitoring_alerts", "monitoring_events"}

OWNS = re.compile(r"^-- Owns: ([\w, ]+)((?:\n--\s{3,}[\w, ]+)*)", re.MULTILINE)
FUNCTION = re.compile(r"\bCREATE\s+(?:OR\s+REPLACE\s+)?FUNCTION\s+(\w+)", re.IGNORECASE)
WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(?:public\.)?(_?monitoring_\w+)", re.IGNORECASE)
CALL = re.compile(r"\b(?:public\.)?(_?monitoring_\w+)\s*\(", re.IGNORECASE)
TABLE = re.compile(r"^CREATE TABLE public\.(\w+)", re.MULTILINE)
TEMP_TABLE = re.compile(r"\bCREATE\s+TEMP(?:ORARY)?\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)


def without_comments_and_strings(text: str) -> str:
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"'(?:[^']|'')*'", "''", text)


@dataclass
class SqlFile:
    name: str
    text: str
    owns: set[str] = field(init=False)
    functions: set[str] = field(init=False)

    def __post_init__(self):
        self.owns = {t for m in OWNS.finditer(self.text) for t in re.findall(r"\w+", m[1] + m[2])}
        self.code = without_comments_and_strings(self.text)
        self.functions = set(FUNCTION.findall(self.code))
        self.temp_tables = set(TEMP_TABLE.findall(self.code))  # a file's scratch space is its own

    def writes(self) -> list[tuple[str, str]]:
        """(verb, table) of every write in this file's code."""
        return [(" ".join(m[1].upper().split()), m[2]) for m in WRITE.finditer(self.code)]

    def calls(self) -> set[str]:
        return set(CALL.findall(self.code))


def load(names: list[str], read=lambda name: (SQL_DIR / name).read_text(encoding="utf-8")) -> list[SqlFile]:
    return [SqlFile(name, read(name)) for name in names]


def definition_order() -> list[str]:
    lines = (SQL_DIR / "definitions.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def owners(files: list[SqlFile]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in files:
        for table in f.owns:
            found.setdefault(table, []).append(f.name)
    return found


def writes_by_others(files: list[SqlFile]) -> list[str]:
    owner = {table: names[0] for table, names in owners(files).items()}
    return sorted(
        f"{f.name} {verb} {table} (owner: {owner.get(table, 'none')})"
        for f in files for verb, table in f.writes()
        if owner.get(table) != f.name and table not in f.temp_tables
        and not (verb == "INSERT INTO" and table in PUBLIC_INSERTS)
    )


def calls_downward(files: list[SqlFile]) -> list[str]:
    """Calls from a file to a function defined in a file below it in the order given."""
    home: Mapping[str, int] = {fn: i for i, f in enumerate(files) for fn in f.functions}
    return sorted(
        f"{f.name} calls {fn} of {files[home[fn]].name}"
        for i, f in enumerate(files) for fn in f.calls()
        if fn in home and home[fn] > i
    )


def project_files() -> list[SqlFile]:
    # bookkeeping.sql runs first on both install paths, before the files of definitions
    return load(["bookkeeping.sql", *definition_order()])


def test_every_table_of_the_schema_has_exactly_one_owning_file():
    files = project_files()
    tables = set(TABLE.findall((SQL_DIR / "schema.sql").read_text(encoding="utf-8")))
    found = owners(files)
    assert {t: names for t, names in found.items() if len(names) > 1} == {}
    assert tables - found.keys() == set(), "tables no file owns"
    assert found.keys() - tables == set(), "owned names that are not tables of the schema"


def test_only_the_owning_file_writes_a_table():
    assert writes_by_others(project_files()) == []


def test_files_call_only_their_own_functions_and_those_of_files_above_them():
    assert calls_downward(project_files()) == []


def test_the_checks_see_a_write_from_a_non_owner_and_a_call_downward():
    texts = {
        "a.sql": "-- Owns: monitoring_deliveries\nCREATE FUNCTION _monitoring_a() RETURNS void AS $$\n"
                 "    SELECT public._monitoring_b();  -- INSERT INTO monitoring_silences in a comment\n$$;\n",
        "b.sql": "-- Owns: monitoring_silences,\n--       monitoring_people\nCREATE FUNCTION _monitoring_b() RETURNS void AS $$\n"
                 "    UPDATE public.monitoring_deliveries SET status = 'x';\n"
                 "    INSERT INTO monitoring_alerts (title) VALUES ('UPDATE monitoring_people');\n$$;\n",
    }
    files = load(list(texts), read=texts.__getitem__)
    assert owners(files) == {"monitoring_deliveries": ["a.sql"], "monitoring_silences": ["b.sql"],
                             "monitoring_people": ["b.sql"]}
    assert writes_by_others(files) == ["b.sql UPDATE monitoring_deliveries (owner: a.sql)"]
    assert calls_downward(files) == ["a.sql calls _monitoring_b of b.sql"]
    assert calls_downward(list(reversed(files))) == []
