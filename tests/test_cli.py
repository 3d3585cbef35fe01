"""The `mmrec` CLI in-process: exit codes, help without torch, ingest/show round trip."""

from __future__ import annotations

import subprocess
import sys

from catalog_fixtures import good_rows, write_myntra
from mmrec.cli import main


def test_help_is_fast_and_imports_no_torch():
    code = ("import sys; from mmrec.cli import main; rc = main(['--help']); "
            "bad = [m for m in ('torch', 'transformers', 'ray', 'faiss', 'lightgbm') if m in sys.modules]; "
            "print(bad); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip().splitlines()[-1] == "[]"
    assert "catalog" in out.stdout


def test_ingest_show_versions(tmp_path, capsys):
    src = write_myntra(tmp_path / "m", good_rows(6))
    art = tmp_path / "art"
    assert main(["--artifacts", str(art), "--quiet", "catalog", "ingest", "--source", str(src)]) == 0
    version = capsys.readouterr().out.strip()
    assert (art / "items" / version / "items.parquet").is_file()
    assert (art / "items" / "CURRENT").read_text().strip() == version
    assert main(["--artifacts", str(art), "catalog", "show"]) == 0
    out = capsys.readouterr().out
    assert "items: 6" in out and "slot: " in out
    assert main(["--artifacts", str(art), "catalog", "show", "--item", "100"]) == 0
    assert '"pattern": "solid"' in capsys.readouterr().out
    assert main(["--artifacts", str(art), "catalog", "show", "--item", "nope"]) == 2
    assert main(["--artifacts", str(art), "catalog", "versions"]) == 0
    assert version in capsys.readouterr().out


def test_bad_input_exits_2_with_message(tmp_path, capsys):
    rows = good_rows(4)
    rows[0]["articleType"] = rows[1]["articleType"] = "Spaceships"
    src = write_myntra(tmp_path / "m", rows)
    art = tmp_path / "art"
    assert main(["--artifacts", str(art), "--quiet", "catalog", "ingest", "--source", str(src)]) == 2
    err = capsys.readouterr().err
    assert "2 of 4 rows have errors" in err and "row 1 category" in err
    assert not (art / "items").exists() or not any((art / "items").iterdir())
    # validate writes the report and exits 2 as well
    assert main(["--quiet", "catalog", "validate", "--source", str(src), "--report", str(tmp_path / "r.json")]) == 2
    assert (tmp_path / "r.json").is_file()
    # unknown option, unknown config key, missing source
    assert main(["catalog", "ingest", "--source", str(src), "--bogus"]) == 2
    assert main(["catalog", "ingest", "--source", str(src), "--set", "nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err
    assert main(["catalog", "ingest", "--source", str(tmp_path / "absent")]) == 2


def test_config_show(capsys):
    assert main(["config", "show", "ingest", "--set", "workers=2"]) == 0
    assert "workers: 2" in capsys.readouterr().out
