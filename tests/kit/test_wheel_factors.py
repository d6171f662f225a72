"""The user's ``factor`` package and the bundled factors, from a real (non-editable) wheel.

The wheel is built once (``pip wheel --no-deps`` from a copy of the sources) and installed with
``pip install --no-deps --target``. Each strategy runs as BMAC users run theirs: ``python
strategy.py`` in its own folder beside its own ``factor/`` (with and without ``__init__.py``),
here with ``-S`` and PYTHONPATH = the install dir + this venv's site-packages (for the
dependencies), so the repository's editable install (a ``.pth`` hook) is not seen.

The user's ``factor/`` has its own ``PctChg`` (it must win the clash) and ``MyMom``; ``Rsi``
exists only bundled (it must stay reachable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from bmac_kit._factors import apply_single, load_factors

REPO = Path(__file__).resolve().parents[2]
T0 = 1_721_216_400_000

STRATEGY = """\
import asyncio
import json
import sys

from bmac_kit import BmacSingleSymbolCalculator, CandleFileReader
from bmac_kit._factors import import_factor_module


async def main():
    cfgs = [("PctChg", 1), ("MyMom", 2), ("Rsi", 3)]
    calc = BmacSingleSymbolCalculator("BTCUSDT", CandleFileReader(sys.argv[1]), cfgs)
    df = await calc.calc_factors(int(sys.argv[2]))
    files = {n: import_factor_module("factor", n).__file__ for n, _ in cfgs}
    row = {c: df.item(-1, c) for c in ("PctChg_1", "MyMom_2", "Rsi_3")}
    print(json.dumps({"row": row, "files": files, "kit": sys.modules["bmac_kit"].__file__}))


asyncio.run(main())
"""
USER_PCTCHG = """\
def signal(*args):
    df, n, factor_name = args[0], args[1], args[2]
    df[factor_name] = 42.0  # the user's own PctChg
    return df
"""
USER_MYMOM = """\
def signal(*args):
    df, n, factor_name = args[0], args[1], args[2]
    df[factor_name] = df["close"].diff(n)
    return df
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, installed (no deps) into a directory of its own."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".venv", "build")
    for name in ("bmac_trio", "bmac_kit", "factor"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(root / "dist"), str(src)], check=True)
    (wheel,) = (root / "dist").glob("bmac_trio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bmac_kit/factors/PctChg.py" in names
    assert not [n for n in names if n.startswith("factor/")]  # the user's name stays free
    target = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)
    return target


@pytest.mark.slow
@pytest.mark.parametrize("with_init", [True, False], ids=["package", "namespace"])
def test_user_factor_package_wins_and_bundled_ones_stay_reachable(
    installed: Path, tmp_path: Path, datadir, make_candles, with_init: bool
) -> None:
    frame = make_candles(30, end_ms=T0)
    datadir.write_symbol("BTCUSDT", frame)
    strategy = tmp_path / "strategy"
    (strategy / "factor").mkdir(parents=True)
    if with_init:
        (strategy / "factor" / "__init__.py").write_text("")
    (strategy / "factor" / "PctChg.py").write_text(USER_PCTCHG)
    (strategy / "factor" / "MyMom.py").write_text(USER_MYMOM)
    (strategy / "strategy.py").write_text(STRATEGY)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"]]),
    }
    out = subprocess.run(
        [sys.executable, "-S", "strategy.py", str(datadir.candles), str(T0)],
        cwd=strategy,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert Path(got["kit"]).is_relative_to(installed)  # the wheel, not the repository
    assert Path(got["files"]["PctChg"]) == strategy / "factor" / "PctChg.py"
    assert Path(got["files"]["MyMom"]) == strategy / "factor" / "MyMom.py"
    assert Path(got["files"]["Rsi"]) == installed / "bmac_kit" / "factors" / "Rsi.py"
    close = frame.get_column("close").to_list()
    rsi = apply_single(frame, load_factors([("Rsi", 3)], "bmac_kit.factors")).item(-1, "Rsi_3")
    assert got["row"] == {
        "PctChg_1": 42.0,
        "MyMom_2": pytest.approx(close[-1] - close[-3], rel=1e-12),
        "Rsi_3": pytest.approx(rsi, rel=1e-12),
    }


def test_lookup_order_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rules without a wheel: user first, bundled next, real import errors raised."""
    from bmac_kit._factors import import_factor_module

    pkg = tmp_path / "myfactors"
    pkg.mkdir()
    (pkg / "PctChg.py").write_text(USER_PCTCHG)
    (pkg / "Broken.py").write_text("import no_such_module_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert import_factor_module("myfactors", "PctChg").__file__ == str(pkg / "PctChg.py")
        assert import_factor_module("myfactors", "Rsi").__name__ == "bmac_kit.factors.Rsi"
        assert import_factor_module("nosuchpackage", "Ema").__name__ == "bmac_kit.factors.Ema"
        with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
            import_factor_module("myfactors", "Broken")
        with pytest.raises(ModuleNotFoundError, match=r"no factor module myfactors\.Nope"):
            import_factor_module("myfactors", "Nope")
    finally:
        for name in [m for m in sys.modules if m.startswith("myfactors")]:
            del sys.modules[name]
