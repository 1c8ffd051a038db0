"""Installing Drover (issue 6): `make install` into an FHS tree, the Debian
package from `make deb` (installed with dpkg, started as its unit would),
the source tarball from `make dist`, `drover -v` and `drover --locations`.

These run `make`, which builds the release binary (with the Swift runtime
linked in) once; the package test installs into the real system and removes
it again, so it runs only as root and only when no `drover` package is
installed already."""

import os
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from conftest import DROVER_BIN, IS_ROOT, REPO, fcgi_request, wait_for

MAKE = shutil.which("make")
DPKG = shutil.which("dpkg")

needs_make = pytest.mark.skipif(MAKE is None or shutil.which("git") is None, reason="needs make and git")
FHS = ["PREFIX=/usr", "SYSCONFDIR=/etc", "LOCALSTATEDIR=/var", "RUNDIR=/run"]
HELLO = '<?php echo "hello from ", php_sapi_name(), "\\n";\n'


def make(*args, timeout=1200):
    r = subprocess.run([MAKE, "-C", str(REPO), *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"make {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def locations(binary, env=None):
    out = subprocess.run([binary, "--locations"], capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 0, out
    return {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^(\S+)\s+(\S+)\s+\((.*)\)$", out.stdout, re.M)}


class Served:
    """Runs an installed drover the way drover.service does (-t, then -F),
    on the installed configuration, and stops it again."""

    def __init__(self, drover, conf, sock):
        self.sock = sock
        check = subprocess.run([drover, "-t", "-y", conf], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check
        self.proc = subprocess.Popen([drover, "-F", "-y", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def first_response(self, script):
        def answer():
            if self.proc.poll() is not None:
                raise AssertionError(f"drover exited: {self.proc.stdout.read().decode(errors='replace')}")
            if not os.path.exists(self.sock):
                return None
            r = fcgi_request(self.sock, script, timeout=10)
            return r if r.status == 200 else None
        return wait_for(answer, interval=0.02, what=f"a 200 from {self.sock}")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGQUIT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode


def www_script(tmp_path):
    """A script the pool's user (www-data) can read: pytest's own temporary
    directories are private to root, so it goes to a directory of its own."""
    www = Path(tempfile.mkdtemp(prefix="drover-install-www-"))
    os.chmod(www, 0o755)
    (www / "hello.php").write_text(HELLO)
    os.chmod(www / "hello.php", 0o644)
    return str(www / "hello.php")


def run_dirs():
    """/run/drover and /var/log/drover as tmpfiles.d would make them; the
    ones this test created are removed afterwards."""
    made = [d for d in ("/run/drover", "/var/log/drover") if not os.path.exists(d)]
    for d in made:
        os.makedirs(d)
    return made


@needs_make
def test_version_and_build_information():
    out = subprocess.run([DROVER_BIN, "-v"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0
    version = re.search(r'static let string = "(.*)"', (REPO / "Sources/DroverCore/Version.swift").read_text()).group(1)
    lines = out.stdout.splitlines()
    assert lines[0].startswith(f"drover {version} "), out.stdout
    assert re.match(r"built by (make|swift build)", lines[1]), out.stdout
    assert re.fullmatch(r"libev \d+\.\d+, libuv \d+\.\d+\.\d+", lines[2]), out.stdout


def test_locations_from_the_source_tree_a_file_and_flags(tmp_path):
    here = locations(DROVER_BIN)
    assert here["config_file"] == (str(REPO / "Config/drover.conf"), f"source tree {REPO}")
    assert here["sysconfdir"][1] == "compiled in"
    f = tmp_path / "drover.locations"
    f.write_text("; a relocated layout\nsysconfdir = /opt/d/etc\nrundir = /opt/d/run\n")
    moved = locations(DROVER_BIN, env={**os.environ, "DROVER_LOCATIONS": str(f)})
    assert moved["config_file"] == ("/opt/d/etc/drover/drover.conf", f"locations file {f}")
    assert moved["control_socket"] == ("/opt/d/run/drover/drover.ctl", f"locations file {f}")
    assert moved["log_dir"][1] == "compiled in"
    flagged = subprocess.run([DROVER_BIN, "--locations", "-y", "/x/y.conf", "-g", "/x/y.pid"],
                             capture_output=True, text=True, timeout=30).stdout
    assert re.search(r"^config_file\s+/x/y.conf\s+\(flag -y\)$", flagged, re.M), flagged
    assert re.search(r"^pid_file\s+/x/y.pid\s+\(flag -g\)$", flagged, re.M), flagged


@needs_make
@pytest.mark.skipif(not IS_ROOT, reason="the installed pool runs as www-data: needs root")
def test_make_install_fhs_tree_runs_with_its_installed_config(tmp_path):
    dest = tmp_path / "root"
    make("install", f"DESTDIR={dest}", *FHS)
    expected = ["usr/sbin/drover", "usr/bin/droverctl", "etc/drover/drover.conf", "etc/drover/pool.d/www.conf",
                "usr/share/doc/drover/README.md", "usr/share/doc/drover/configuration.md"]
    for path in expected:
        assert (dest / path).is_file(), path
    for page in ("man8/drover.8", "man5/drover.conf.5", "man1/droverctl.1"):
        if (REPO / "contrib/man" / Path(page).name).exists():
            assert (dest / "usr/share/man" / page).is_file(), page
    if (REPO / "contrib/systemd/drover.service").exists():
        unit = (dest / "lib/systemd/system/drover.service").read_text() if (dest / "lib/systemd/system/drover.service").exists() \
            else (dest / "usr/lib/systemd/system/drover.service").read_text()
        assert "/usr/sbin/drover" in unit
    drover = str(dest / "usr/sbin/drover")
    where = locations(drover)
    assert where["config_file"] == ("/etc/drover/drover.conf", "compiled in")
    assert where["pid_file"] == ("/run/drover/drover.pid", "compiled in")
    conf = (dest / "etc/drover/drover.conf").read_text()
    assert "pid = /run/drover/drover.pid" in conf and "error_log = /var/log/drover/error.log" in conf
    assert "user = www-data" in (dest / "etc/drover/pool.d/www.conf").read_text()
    # It serves, from the tree, on the installed configuration.
    made = run_dirs()
    script = www_script(tmp_path)
    served = Served(drover, str(dest / "etc/drover/drover.conf"), "/run/drover/www.sock")
    try:
        r = served.first_response(script)
        assert "hello from cgi-fcgi" in r.text, r
        status = subprocess.run([str(dest / "usr/bin/droverctl"), "status", "--json", "-c", str(dest / "etc/drover/drover.conf")],
                                capture_output=True, text=True, timeout=30)
        assert status.returncode == 0 and '"pool":"www"' in status.stdout, status
    finally:
        assert served.stop() == 0
        for d in made + [os.path.dirname(script)]:
            shutil.rmtree(d, ignore_errors=True)


def installed(package):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "install ok installed" in r.stdout


@needs_make
@pytest.mark.skipif(not IS_ROOT or DPKG is None, reason="installs a package: needs root and dpkg")
def test_make_deb_installs_runs_and_purges(tmp_path):
    if installed("drover"):
        pytest.skip("a drover package is installed on this machine; not touching it")
    make("deb")
    debs = sorted((REPO / "dist").glob("drover_*.deb"), key=os.path.getmtime)
    assert debs, "make deb made no package"
    deb = str(debs[-1])
    info = subprocess.run(["dpkg-deb", "-f", deb, "Package", "Version", "Installed-Size", "Depends"],
                          capture_output=True, text=True, check=True).stdout
    assert "Package: drover" in info and "libev4" in info and "libuv1" in info, info
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", deb], capture_output=True, check=True).stdout
    script = www_script(tmp_path)
    started = time.monotonic()
    subprocess.run(["dpkg", "-i", deb], capture_output=True, text=True, check=True, timeout=120)
    unpacked = time.monotonic() - started
    served = None
    try:
        assert installed("drover")
        listed = subprocess.run(["dpkg", "-L", "drover"], capture_output=True, text=True, check=True).stdout.split()
        for path in ("/usr/sbin/drover", "/usr/bin/droverctl", "/etc/drover/drover.conf", "/etc/drover/pool.d/www.conf"):
            assert path in listed, path
        status = subprocess.run(["dpkg-query", "-s", "drover"], capture_output=True, text=True, check=True).stdout
        assert "/etc/drover/drover.conf" in status, "the configuration must be a conffile"
        assert os.path.isdir("/var/log/drover") and os.path.isdir("/run/drover"), "postinst makes the directories"
        assert subprocess.run(["getent", "passwd", "drover"], capture_output=True).returncode == 0, "postinst adds the user"
        served = Served("/usr/sbin/drover", "/etc/drover/drover.conf", "/run/drover/www.sock")
        r = served.first_response(script)
        first = time.monotonic() - started
        assert "hello from cgi-fcgi" in r.text, r
        size = re.search(r"Installed-Size: (\d+)", info).group(1)
        print(f"\n[install] {Path(deb).name}: {os.path.getsize(deb) / 1e6:.1f} MB, installed {int(size) / 1024:.1f} MiB; "
              f"dpkg -i took {unpacked * 1000:.0f} ms (its man-db trigger included), the first 200 came "
              f"{(first - unpacked) * 1000:.0f} ms later: {first * 1000:.0f} ms in all")
        assert served.stop() == 0
        served = None
    finally:
        if served:
            served.stop()
        subprocess.run(["dpkg", "--purge", "drover"], capture_output=True, text=True, timeout=120)
        shutil.rmtree(os.path.dirname(script), ignore_errors=True)
    assert not installed("drover")
    assert not os.path.exists("/usr/sbin/drover") and not os.path.exists("/etc/drover/drover.conf")
    assert conffiles  # the control archive was readable


@needs_make
def test_make_dist_tarball_holds_the_tracked_sources():
    make("dist")
    version = re.search(r'static let string = "(.*)"', (REPO / "Sources/DroverCore/Version.swift").read_text()).group(1)
    tarball = REPO / "dist" / f"drover-{version}.tar.gz"
    with tarfile.open(tarball) as t:
        names = t.getnames()
    prefix = f"drover-{version}/"
    assert all(n.startswith(prefix.rstrip("/")) for n in names)
    for needed in ("Package.swift", "Makefile", "README.md", "CHANGELOG.md", "Sources/drover/Drover.swift",
                   "Config/dist/drover.conf.in", "contrib/debian/postinst", "scripts/install-deps"):
        assert prefix + needed in names, needed
    assert not any("/.build/" in n or "/generated/" in n for n in names)
