"""`drover -t`: configuration test exit codes and messages."""

import os
import re
import subprocess

import pytest

from conftest import DROVER_BIN, IS_ROOT, pool_section

STOCK_PHP_FPM_CONF = "/etc/php/8.2/fpm/php-fpm.conf"


def drover(*args, cwd=None):
    return subprocess.run([DROVER_BIN, *args], capture_output=True, text=True, timeout=30, cwd=cwd,
                          stdin=subprocess.DEVNULL)


def root_flag():
    return ["-R"] if IS_ROOT else []


def write(path, text):
    path.write_text(text)
    return str(path)


GLOBAL = "[global]\nerror_log = /tmp/drover-t-unused.log\ndaemonize = no\n\n"


def test_valid_config_passes(workdir):
    conf = write(workdir / "ok.conf", GLOBAL + pool_section("www", str(workdir / "www.sock"), max_children=3))
    out = drover("-t", *root_flag(), "-y", conf)
    assert out.returncode == 0, out
    assert "test is successful" in out.stderr + out.stdout
    assert not os.path.exists(workdir / "www.sock"), "-t must not open listeners"

    out = drover("-tt", *root_flag(), "-y", conf)
    assert out.returncode == 0, out
    assert re.search(r"pm\.max_children\s*=\s*3", out.stdout + out.stderr), out


def test_missing_max_children_is_a_config_error(workdir):
    text = GLOBAL + "[www]\nlisten = /tmp/x.sock\npm = static\n"
    conf = write(workdir / "nomax.conf", text)
    out = drover("-t", *root_flag(), "-y", conf)
    assert out.returncode == 78, out
    assert "pm.max_children" in out.stderr
    # file:line, pointing into this file
    assert re.search(re.escape(conf) + r":\d+", out.stderr), out.stderr


def test_unknown_directive_is_a_config_error_with_file_and_line(workdir):
    text = GLOBAL + pool_section("www", "/tmp/x.sock", max_children=2) + "no.such.directive = 1\n"
    conf = write(workdir / "unknown.conf", text)
    line = text.splitlines().index("no.such.directive = 1") + 1
    out = drover("-t", *root_flag(), "-y", conf)
    assert out.returncode == 78, out
    assert f"{conf}:{line}" in out.stderr, out.stderr
    assert "no.such.directive" in out.stderr


def test_error_in_an_included_file_names_that_file(workdir):
    (workdir / "pool.d").mkdir()
    inc = write(workdir / "pool.d" / "a.conf", "[www]\nlisten = /tmp/x.sock\npm = static\npm.max_children = two\n")
    conf = write(workdir / "main.conf", GLOBAL + f"include = {workdir}/pool.d/*.conf\n")
    out = drover("-t", *root_flag(), "-y", conf)
    assert out.returncode == 78, out
    assert f"{inc}:4" in out.stderr, out.stderr


def test_unknown_flag_is_a_usage_error():
    out = drover("--no-such-flag")
    assert out.returncode == 64, out
    out = drover("-t", "-y")
    assert out.returncode == 64, out


def test_missing_config_file_is_a_config_error(workdir):
    out = drover("-t", *root_flag(), "-y", str(workdir / "absent.conf"))
    assert out.returncode == 78, out
    assert "absent.conf" in out.stderr


@pytest.mark.skipif(not os.path.exists(STOCK_PHP_FPM_CONF), reason="php8.2-fpm is not installed")
def test_debian_stock_php_fpm_conf_passes():
    out = drover("-t", "-R", "-y", STOCK_PHP_FPM_CONF)
    assert out.returncode == 0, out
    assert "test is successful" in out.stderr
    # The stock pool is pm = dynamic, which Drover implements: no warning.
    assert "WARNING" not in out.stderr


def test_version():
    out = drover("-v")
    assert out.returncode == 0
    assert out.stdout.startswith("drover ")
