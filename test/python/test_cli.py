"""The command line (python -m attn), attnc --emit=shared and pip install."""

import os
import shutil
import subprocess
import sys

import attn


def run_attn(*args, cwd=None):
    env = dict(os.environ)
    pkg = os.path.dirname(os.path.dirname(attn.__file__))
    env["PYTHONPATH"] = pkg + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "attn", *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=cwd)


def test_cli_check_file(repo):
    p = run_attn("check", repo / "examples" / "causal.mlir",
                 "--rank-size", "e=59,f=59", "--size", "b=1,h=2,m=113,p=113")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("PASS causal_causal (b=1, h=2, m=113, p=113")
    assert "o [1, 2, 113, 59]" in p.stdout


def test_cli_check_fails_with_exit_1(repo):
    # A tolerance no float32 kernel meets: the check must fail.
    p = run_attn("check", "--variant", "mha", "--head-dim", "59",
                 "--atol", "0", "--rtol", "1e-12")
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.startswith("FAIL")


def test_cli_errors(repo):
    p = run_attn("check", repo / "examples" / "prefix-lm.mlir")
    assert p.returncode == 2
    assert "prefix_len is int32; give it with inputs" in p.stderr
    p = run_attn("check", "missing.mlir")
    assert p.returncode == 2 and "no such cascade file" in p.stderr


def test_cli_bench_and_emit(tmp_path):
    p = run_attn("bench", "--variant", "causal", "--head-dim", "59",
                 "--size", "b=1,h=2,m=128,p=128", "--repeat", "2")
    assert p.returncode == 0, p.stderr
    assert "causal_causal (b=1, h=2, m=128, p=128): median" in p.stdout
    out = tmp_path / "w.mlir"
    p = run_attn("emit", "window", "--window", "5", "--head-dim", "128", "-o", out)
    assert p.returncode == 0, p.stderr
    text = out.read_text()
    assert "e = 128" in text and "p >= m - 5" in text
    opt = subprocess.run([attn.find_tool("attn-opt"), str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert opt.returncode == 0, opt.stderr


def test_attnc_emit_shared(tmp_path, repo):
    attnc = attn.find_tool("attnc")
    p = subprocess.run([attnc, str(repo / "examples" / "mha.mlir"), "-o",
                        str(tmp_path / "flash"), "--emit=shared"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "libflash.so").is_file()
    assert "attn_status flash_mha(" in (tmp_path / "flash.h").read_text()
    assert not (tmp_path / "libflash.a").exists()
    p = subprocess.run([attnc, str(repo / "examples" / "mha.mlir"), "-o",
                        str(tmp_path / "g"), "--emit=shared",
                        "--cc=no-such-compiler-driver"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1
    assert "cannot find the C compiler driver 'no-such-compiler-driver'" in p.stderr
    p = subprocess.run([attnc, str(repo / "examples" / "mha.mlir"), "-o",
                        str(tmp_path / "g"), "--emit=shared", "--cc=/bin/false"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 1 and "linking" in p.stderr and "failed" in p.stderr


def test_pip_install_offline(tmp_path, repo):
    """pip install ./python into a venv, with no index (offline)."""
    src = tmp_path / "src"
    shutil.copytree(repo / "python", src,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages",
                    str(venv)], check=True)
    py = venv / "bin" / "python"
    p = subprocess.run([str(py), "-m", "pip", "install", "--no-index",
                        "--no-cache-dir", "--quiet", str(src)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([str(py), "-c", "import attn, sys; print(attn.__file__); "
                        "print(attn.variants.causal(head_dim=128).text())"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                       env=env, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert str(venv) in p.stdout.splitlines()[0]
    assert "attn.cascade @causal ranks(b, h, m, p, e = 128, f = 128)" in p.stdout
