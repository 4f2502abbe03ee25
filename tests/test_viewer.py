"""``modsab view`` without a browser: the filter language, sorting and paging against pandas
on the same table (on the Parquet file and on the in-memory copy), injection attempts
refused with 400 and never run, the API's JSON and headers, the CLI, a real server, and
the report's sample above its size limit."""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import synthetic
import viewer_runs
from viewer_runs import BAD_AGENT, BAD_FIELD, BAD_LABEL

pytest.importorskip("duckdb", reason="pip install 'modsab[view]'")
pytest.importorskip("starlette", reason="pip install 'modsab[view]'")

from starlette.testclient import TestClient  # noqa: E402

from modsab.cli import main  # noqa: E402
from modsab.views.viewer import create_app, open_run  # noqa: E402
from modsab.views.viewer.query import QueryError, Schema, compile_filter, compile_sort, tokenize  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return viewer_runs.xss_run(tmp_path_factory.mktemp("view") / "xss-run")


@pytest.fixture(scope="module")
def frame(run_dir):
    return pd.read_parquet(run_dir / "instances.parquet")


@pytest.fixture(scope="module", params=["file", "memory"])
def client(request, run_dir):
    run = open_run(run_dir, memory=request.param == "memory")
    if request.param == "memory":
        assert run.table.wait_loaded(120) and run.table.engine == "memory"
    else:
        assert run.table.engine == "parquet"
    with TestClient(create_app(run), base_url="http://127.0.0.1") as test_client:
        test_client.run = run
        yield test_client


def ids(client, filter_text="", sort=(), size=500):
    """Every matching instance id, in the server's order, page by page."""
    out, page = [], 1
    while True:
        response = client.get(
            "/api/instances", params={"filter": filter_text, "sort": list(sort), "page": page, "size": size}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        out += [row["instance_id"] for row in body["rows"]]
        if page >= body["pages"]:
            assert len(out) == body["total"]
            return out
        page += 1


# -- the filter language --------------------------------------------------------------------------


def any_agent(frame, suffix, test):
    agents = [c[: -len(".role")] for c in frame.columns if c.endswith(".role")]
    return np.logical_or.reduce([test(frame[f"{a}.{suffix}"]) for a in agents if f"{a}.{suffix}" in frame])


FILTERS = [
    ("", lambda f: pd.Series(True, index=f.index)),
    ("gold = joy", lambda f: f["gold"] == "joy"),
    ("gold == 'joy' AND fused_top1 != joy", lambda f: (f["gold"] == "joy") & (f["fused_top1"] != "joy")),
    ("any.role = successful_sabotage", lambda f: any_agent(f, "role", lambda c: c == "successful_sabotage")),
    (
        "audio.role in (potential_sabotage, successful_sabotage) and audio.confidence >= 0.8",
        lambda f: f["audio.role"].isin(["potential_sabotage", "successful_sabotage"]) & (f["audio.confidence"] >= 0.8),
    ),
    ("text.confidence < 0.5", lambda f: f["text.confidence"] < 0.5),  # NaN (abstained) never matches
    ("text.top != neutral", lambda f: f["text.top"] != "neutral"),  # abstained (no top) is "not neutral"
    ("not (text.top = neutral)", lambda f: ~(f["text.top"] == "neutral")),
    ("text.top is null", lambda f: f["text.top"].isna()),
    ("text.confidence is not null and gold_rank > 2", lambda f: f["text.confidence"].notna() & (f["gold_rank"] > 2)),
    ("hit_at_1 = false or gold_rank >= 3", lambda f: ~f["hit_at_1"] | (f["gold_rank"] >= 3)),
    ("instance_id contains SCRIPT", lambda f: f["instance_id"].str.lower().str.contains("script", regex=False)),
    ("instance_id not contains dia1", lambda f: ~f["instance_id"].str.contains("dia1", regex=False)),
    ("fused_ranking contains anger", lambda f: f["fused_ranking"].map(lambda r: "anger" in list(r))),
    (f"gold = {json.dumps(BAD_LABEL)}", lambda f: f["gold"] == BAD_LABEL),
    (f"`{BAD_AGENT}.role` = contributor", lambda f: f[f"{BAD_AGENT}.role"] == "contributor"),
    ("any.causal = saboteur", lambda f: any_agent(f, "causal", lambda c: c == "saboteur")),
    (
        "audio.shapley_correct < 0 and dataset not in (mer)",
        lambda f: (f["audio.shapley_correct"] < 0) & (f["dataset"] != "mer"),
    ),
    ("(gold = joy or gold = fear) and not hit_at_2 = true", lambda f: f["gold"].isin(["joy", "fear"]) & ~f["hit_at_2"]),
    ("gold >= n and gold < s", lambda f: (f["gold"] >= "n") & (f["gold"] < "s")),
    ("gold_rank in (1, 3) and text.quality > 50.5", lambda f: f["gold_rank"].isin([1, 3]) & (f["text.quality"] > 50.5)),
]


@pytest.mark.parametrize("text,expected", FILTERS, ids=[f[0][:40] or "(none)" for f in FILTERS])
def test_filters_match_pandas_on_both_engines(client, frame, text, expected):
    keep = np.asarray(expected(frame), dtype=bool)
    assert ids(client, text) == frame["instance_id"][keep].tolist()


def test_cases_are_not_vacuous(frame):
    counts = [int(np.asarray(e(frame), dtype=bool).sum()) for _, e in FILTERS]
    assert all(c > 0 for c in counts), counts  # every filter matches something
    assert sum(c < len(frame) for c in counts) >= len(FILTERS) - 1  # and all but "" leave something out
    assert frame["text.confidence"].isna().any() and any_agent(frame, "causal", lambda c: c == "saboteur").any()


def test_compiled_sql_binds_every_value():
    schema = Schema.from_arrow(__import__("pyarrow").schema([("gold", "string"), ("n", "int64"), ("ok", "bool")]))
    compiled = compile_filter('gold = "x\' or 1=1 --" and n >= 2 or ok = true', schema)
    assert compiled.sql == '((("gold" = ?) AND ("n" >= ?)) OR ("ok" = ?))'
    assert compiled.params == ["x' or 1=1 --", 2, True]
    assert compile_filter("  ", schema).sql == "true"
    assert [t.kind for t in tokenize('a.b<=-1.5e3 "q\\"x" `c``d`')] == ["word", "op", "num", "str", "ident", "end"]
    assert compile_sort(["-n", "gold"], schema) == '"n" DESC NULLS LAST, "gold" ASC NULLS LAST, "file_row_number" ASC'


@pytest.mark.parametrize(
    "text,message",
    [
        ("gold = joy; DROP TABLE loaded", "unexpected"),
        ("gold = 'joy' --", "unexpected"),
        ("gold = joy) or (1 = 1", "unexpected"),
        ("1 = 1", "column name"),
        ("gold", "comparison"),
        ("gold = ", "value"),
        ("nope = 1", "unknown column 'nope'"),
        ('`gold" = gold OR "1` = 1', "unknown column"),
        ("read_csv('/etc/passwd') = 1", "unknown column 'read_csv'"),
        ("gold = joy union select * from loaded", "unexpected"),
        ("gold_rank = two", "number column"),
        ("hit_at_1 = maybe", "yes/no"),
        ("hit_at_1 > true", "yes/no"),
        ("fused_ranking = joy", "list"),
        ("gold_rank contains 1", "'contains' needs"),
        ("any.nothing = 1", "no agent has"),
        ("gold in ()", "value"),
        ("gold is joy", "null"),
        ("(" * 40 + "gold = joy" + ")" * 40, "nested"),
        ("not " * 40 + "gold = joy", "nested"),
        ("gold = " + "x" * 5000, "longer than"),
        (" or ".join(["gold = joy"] * 200), "more than"),
    ],
)
def test_bad_filters_are_400_with_the_reason_and_never_run(client, text, message):
    response = client.get("/api/instances", params={"filter": text})
    assert response.status_code == 400, text
    assert message in response.json()["error"]
    with pytest.raises(QueryError):
        compile_filter(text, client.run.table.schema)


def test_injection_in_values_is_data_and_the_table_is_intact(client, frame):
    for value in ["x' OR '1'='1", 'x" OR "1"="1', "'; DROP TABLE loaded; --", "%", "_"]:
        body = client.get("/api/instances", params={"filter": f"gold = {json.dumps(value)}"}).json()
        assert body["total"] == 0
    assert client.get("/api/instances", params={"filter": 'instance_id contains "%"'}).json()["total"] == 0
    assert client.get("/api/instances").json()["total"] == len(frame)
    # defence in depth: DuckDB itself may read no other file, and its settings are locked
    db, _ = client.run.table._source
    with pytest.raises(Exception, match="disabled by configuration|Permission"):
        db.execute("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(Exception, match="locked"):
        db.execute("SET enable_external_access = true")


# -- sorting and paging -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sort,by,ascending",
    [
        (["-audio.confidence"], ["audio.confidence"], [False]),
        (["text.confidence"], ["text.confidence"], [True]),  # NaN last
        (["gold", "gold_rank"], ["gold", "gold_rank"], [True, True]),
        (["-instance_id"], ["instance_id"], [False]),
        (["text.role"], ["text.role"], [True]),  # an ENUM in memory: still sorted as text
    ],
)
def test_sort_and_pages_match_pandas(client, frame, sort, by, ascending):
    filtered = frame[frame["gold"] != "neutral"]
    if len(by) == 1:
        expected = filtered.sort_values(by[0], ascending=ascending[0], na_position="last", kind="stable")
    else:
        expected = filtered.sort_values(by, ascending=ascending, na_position="last", kind="stable")
    assert ids(client, "gold != neutral", sort, size=37) == expected["instance_id"].tolist()


def test_paging_is_bounded_and_validated(client, frame):
    body = client.get("/api/instances", params={"page": 2, "size": 25}).json()
    assert [r["instance_id"] for r in body["rows"]] == frame["instance_id"][25:50].tolist()
    assert body["pages"] == -(-len(frame) // 25) and body["n_instances"] == len(frame)
    assert body["rows"][0]["file_row_number"] == 25
    beyond = client.get("/api/instances", params={"page": 10_000}).json()
    assert beyond["rows"] == [] and beyond["total"] == len(frame)
    for params in ({"size": 501}, {"size": 0}, {"page": 0}, {"page": "x"}, {"sort": "nope"}, {"sort": "fused_ranking"}):
        response = client.get("/api/instances", params=params)
        assert response.status_code == 400, params
    assert client.get("/api/instances", params={"sort": ["a"] * 5}).status_code == 400


def test_nan_is_null_in_the_json(client, frame):
    abstained = frame[frame["text.confidence"].isna()]["instance_id"].iloc[0]
    row = client.get("/api/instance", params={"id": abstained}).json()["row"]
    assert row["text.confidence"] is None and row["text.role"] == "abstained"


# -- the API ----------------------------------------------------------------------------------------


def test_summary_lists_what_the_page_needs(client, frame, run_dir):
    body = client.get("/api/summary").json()
    assert body["n_instances"] == len(frame) and body["run"] == run_dir.name
    assert body["agents"] == sorted(["text", "audio", BAD_AGENT, "base"])  # the canonical (sorted) agent order
    assert BAD_LABEL in body["labels"] and body["datasets"] == ["meld", "mer"]
    assert body["diagnosis"]["fusion_topk"]["1"] > 0 and "causal" in body["diagnosis"]
    assert body["has"] == {"descriptors": True, "raw": True}
    assert {"name": "audio.confidence", "kind": "number"} in body["columns"]
    assert "gpt-4o-mini" in body["config"]["model"]


def test_one_instance_with_raw_answers_and_descriptors(client, frame):
    payload_id = next(i for i in frame["instance_id"] if "<script>" in i)
    body = client.get("/api/instance", params={"id": payload_id}).json()
    assert body["row"]["instance_id"] == payload_id
    assert body["raw"]["text"].startswith("agent store")  # the agent's run store wins
    assert "window.__xss" in body["raw"]["audio"]  # the run directory's store.sqlite
    assert body["descriptors"][BAD_FIELD].startswith("face: ") and "transcript" in body["descriptors"]
    # the same instance at /api/instance/<id>, an id with a slash, and a missing one
    assert client.get(f"/api/instance/{urllib.request.quote(payload_id, safe='')}").json()["row"] == body["row"]
    missing = client.get("/api/instance", params={"id": "no/such<id>"})
    assert missing.status_code == 404 and "\\u003c" in missing.text
    assert client.get("/api/instance").status_code == 400


def test_json_has_no_markup_characters_and_headers_are_strict(client):
    response = client.get("/api/instances", params={"filter": "instance_id contains script"})
    assert response.json()["total"] > 0
    assert not re.search(r"[<>&]", response.text)  # payloads arrive as \u003c... (json_for_script)
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    for payload in (*synthetic.XSS, BAD_LABEL, BAD_AGENT):
        assert payload not in page.text
    assert "<script" not in re.sub(
        r'<script (type="application/json" id="summary-data"|src="/assets/viewer.js")>', "", page.text
    )
    assert client.get("/assets/viewer.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/assets/../app.py").status_code == 404
    assert client.get("/assets/nope.js").status_code == 404


def test_only_loopback_host_names(client):
    assert client.get("/api/summary", headers={"host": "attacker.example"}).status_code == 400
    assert client.get("/api/summary", headers={"host": "localhost:8765"}).status_code == 200


# -- the command line and a real server ---------------------------------------------------------------


def test_an_instances_file_alone_opens_without_the_run(run_dir, frame):
    run = open_run(run_dir / "instances.parquet", memory=False)
    try:
        with TestClient(create_app(run), base_url="http://127.0.0.1") as alone:
            body = alone.get("/api/summary").json()
            assert body["n_instances"] == len(frame) and body["has"] == {"descriptors": False, "raw": False}
            assert "alone" in body["notes"][0] and body["diagnosis"] == {}
            assert BAD_LABEL in body["labels"]  # read from the table when no diagnosis.json says them
            assert ids(alone, "gold = joy") == frame["instance_id"][frame["gold"] == "joy"].tolist()
    finally:
        run.close()


def test_cli_bad_run_directories_exit_2(tmp_path, capsys):
    cases = [
        (tmp_path / "missing", "no such run directory"),
        (tmp_path, "has no instances.parquet"),
    ]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "instances.parquet").write_bytes(b"not parquet")
    cases.append((broken, "cannot read the instances table"))
    for path, message in cases:
        with pytest.raises(SystemExit) as info:
            main(["view", str(path)])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_cli_port_in_use_exits_2(run_dir, capsys):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(SystemExit) as info:
            main(["view", str(run_dir), "--port", str(taken.getsockname()[1])])
    finally:
        taken.close()
    assert info.value.code == 2 and "cannot listen on 127.0.0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["view", str(run_dir), "--port", "70000"])
    assert info.value.code == 2


def test_the_command_serves_on_loopback_and_stops(run_dir):
    with viewer_runs.view_server(run_dir, "--no-memory") as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "api/instances?size=3&filter=gold%20%3D%20joy", timeout=30) as response:
            body = json.loads(response.read())
        assert len(body["rows"]) == 3 and body["engine"] == "parquet"
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(url + "api/instances?filter=gold%3B", timeout=30)
        assert bad.value.code == 400
        port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OSError):  # stopped: nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# -- the report's size limit ------------------------------------------------------------------------


def test_report_above_the_limit_embeds_a_seeded_sample_and_says_so(tmp_path, monkeypatch):
    from modsab.core.diagnosis import diagnose
    from modsab.views.report import browser, build_report, read_extras

    assert browser.REPORT_INSTANCE_LIMIT == 20_000
    assert browser.sample_rows(20_000) is None
    rows = browser.sample_rows(50_000)
    assert len(rows) == 20_000 and np.all(np.diff(rows) > 0) and np.array_equal(rows, browser.sample_rows(50_000))

    run = synthetic.write_run(tmp_path / "run", 1200)
    result = diagnose(run, bootstrap=0, baseline="base")
    extras = read_extras(run)
    monkeypatch.setattr(browser, "REPORT_INSTANCE_LIMIT", 300)
    sampled = build_report(result, extras=extras)
    data = json.loads(re.search(r'id="instance-data">(.*?)</script>', sampled, re.S).group(1))
    assert len(data["id"]) == 300 and data["sample"] == {"shown": 300, "of": 1200, "seed": 0}
    keep = browser.sample_rows(1200)
    frame = result.instances()
    assert data["id"] == frame["instance_id"][keep].tolist()
    assert data["gold"] == [list(result.pset.labels).index(g) for g in frame["gold"][keep]]
    assert len(data["role"]) == 300 * len(result.pset.agents)
    assert "Showing 300 of 1,200 instances, sampled" in sampled and "modsab view" in sampled
    # bounded: about the size of a report of 300 instances, far below the full page
    monkeypatch.setattr(browser, "REPORT_INSTANCE_LIMIT", 20_000)
    full = build_report(result, extras=extras)
    assert 'id="ib-sample"' not in full
    assert len(sampled) < 0.4 * len(full)
