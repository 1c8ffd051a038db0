"""The distribution files in contrib/ (issue 6), checked with the real tools:

- logrotate: the shipped /etc/logrotate.d/drover, its paths moved into a
  temp dir, rotates a running Drover's error and access logs; the old files
  hold the lines from before, the new ones the lines from after (Drover
  reopened them on the postrotate's SIGUSR1), no worker, app or agent was
  restarted; a second rotation compresses (delaycompress);
- the RPM spec is clean under rpmlint (0 errors, 0 warnings);
- the man pages format without a warning (groff -ww through man --warnings);
- drover.service and drover.socket pass `systemd-analyze verify`, and the
  unit keeps what Drover needs (Type=notify, AF_NETLINK, no
  MemoryDenyWriteExecute/NoNewPrivileges, ...); tmpfiles.d and sysusers.d
  entries apply to a temp root;
- the web-server snippets pass their server's syntax check: nginx always,
  Apache, lighttpd and Caddy when installed.

Each check is skipped, with the package to install, when its tool is missing.
"""

import gzip
import os
import re
import shutil
import subprocess

import pytest

from conftest import (REPO, TIMEOUT, agent_of, app_pids, fcgi_request, pool_section, wait_for, worker_pids,
                      workers_of)

CONTRIB = REPO / "contrib"
SERVICE = CONTRIB / "systemd" / "drover.service"
SOCKET = CONTRIB / "systemd" / "drover.socket"
LOGROTATE_CONF = CONTRIB / "logrotate" / "drover"
SPEC = CONTRIB / "rpm" / "drover.spec"
MAN_PAGES = [CONTRIB / "man" / "drover.8", CONTRIB / "man" / "drover.conf.5", CONTRIB / "man" / "droverctl.1"]


def tool(name, *fallbacks):
    """The path of a program, from PATH or the sbin directories root has."""
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/sbin", *fallbacks):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return None


def need(name, package):
    path = tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {package})")
    return path


def run(cmd, **kwargs):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kwargs)


# ---------------------------------------------------------------------------
# logrotate
# ---------------------------------------------------------------------------

# One recognisable access-log line per request: "GET /hello.php?seq=N 200 WORKER".
SEQ_FORMAT = '"%m %r%Q%q %s %p"'
SEQ_LINE = re.compile(r"GET /hello\.php\?seq=(\d+) 200 (\d+)")


def shipped_logrotate_config(logdir, pid_file):
    """contrib/logrotate/drover with its paths moved: the log directory and
    the pid file into the test's directory, the systemd unit to one that
    does not exist (so a host that runs a real drover.service is left
    alone and the pid-file branch signals this test's master)."""
    text = LOGROTATE_CONF.read_text()
    for shipped in ("/var/log/drover/", "/run/drover/drover.pid", "drover.service"):
        assert shipped in text, f"{LOGROTATE_CONF} no longer mentions {shipped}"
    text = text.replace("/var/log/drover/", f"{logdir}/")
    text = text.replace("/run/drover/drover.pid", str(pid_file))
    return text.replace("drover.service", "drover-contrib-test-absent.service")


def request_lines(sock, script, seqs):
    for seq in seqs:
        response = fcgi_request(sock, script, query=f"seq={seq}")
        assert response.status == 200 and "sapi=cgi-fcgi" in response.text, response


def seqs_in(text):
    """The request numbers of an access log, sorted: two workers each send
    their line when their request is done, so lines of back-to-back requests
    may swap places."""
    lines = text.splitlines()
    for line in lines:
        assert SEQ_LINE.fullmatch(line), f"unexpected access-log line {line!r}"
    return sorted(int(SEQ_LINE.fullmatch(line).group(1)) for line in lines)


def read(path):
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_seqs(path, seqs):
    """Waits until `path` holds exactly the lines of `seqs` (the agent writes
    a few milliseconds after the request)."""
    wait_for(lambda: seqs_in(read(path)) == list(seqs), what=f"{len(seqs)} access lines in {path.name}")


def test_shipped_logrotate_config_rotates_and_drover_reopens(drover_factory, workdir):
    """The real logrotate with the shipped configuration (paths moved into
    the temp dir) and a forced rotation: error.log and www.access.log become
    .1 files holding exactly the lines written before; the requests after it
    go to new files, which only happens if Drover reopened them (the
    postrotate's SIGUSR1 to the pid in the pid file). No worker, app or agent
    changed. A second rotation compresses the first one's files to .2.gz
    (delaycompress) and Drover reopens again."""
    logrotate = need("logrotate", "logrotate")
    logdir = workdir / "log"
    logdir.mkdir(mode=0o750)
    access_log, error_log = logdir / "www.access.log", logdir / "error.log"
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=2,
                                 extra=f"access.log = {access_log}\naccess.format = {SEQ_FORMAT}\n"
                                       "access.suppress_path[] = /status\n")],
                   error_log=False, global_extra=f"error_log = {error_log}\n")
    d.start(wait_ready=False)
    wait_for(lambda: "ready to handle connections" in read(error_log), what="the ready line in error.log")
    d.wait_workers(sock, 2)
    d.remember_pids()
    before = {"workers": sorted(workers_of(d.pid)), "status": worker_pids(sock), "apps": app_pids(sock),
              "agent": agent_of(d.pid)}
    assert before["agent"] and len(before["workers"]) == 2, before

    conf = workdir / "logrotate.conf"
    conf.write_text(shipped_logrotate_config(logdir, d.pid_file))
    conf.chmod(0o644)
    state = workdir / "logrotate.state"
    hello = str(workdir / "www" / "hello.php")

    def rotate():
        result = run([logrotate, "-f", "-s", state, conf])
        assert result.returncode == 0, (result.stdout, result.stderr)

    request_lines(sock, hello, range(0, 20))
    wait_seqs(access_log, range(0, 20))
    rotate()

    old_access, old_error = logdir / "www.access.log.1", logdir / "error.log.1"
    assert seqs_in(read(old_access)) == list(range(0, 20)), sorted(os.listdir(logdir))
    assert "ready to handle connections" in read(old_error)
    # logrotate's `create 0640` made the new files; Drover appends to them.
    assert access_log.exists() and access_log.stat().st_mode & 0o777 == 0o640
    wait_for(lambda: "access log file re-opened" in read(error_log),
             what="Drover's reopen notice in the new error.log")
    request_lines(sock, hello, range(20, 30))
    wait_seqs(access_log, range(20, 30))
    assert seqs_in(read(old_access)) == list(range(0, 20)), "a line went to the rotated file"

    rotate()
    wait_for(lambda: "access log file re-opened" in read(error_log), what="the second reopen notice")
    request_lines(sock, hello, range(30, 35))
    wait_seqs(access_log, range(30, 35))
    assert seqs_in(read(old_access)) == list(range(20, 30))
    with gzip.open(logdir / "www.access.log.2.gz", "rt") as f:
        assert seqs_in(f.read()) == list(range(0, 20))
    assert "ready to handle connections" in gzip.open(logdir / "error.log.2.gz", "rt").read()

    after = {"workers": sorted(workers_of(d.pid)), "status": worker_pids(sock), "apps": app_pids(sock),
             "agent": agent_of(d.pid)}
    assert after == before, (before, after)
    assert "received SIGUSR1" in read(old_error) + read(error_log)
    for line in read(access_log).splitlines():
        assert int(SEQ_LINE.fullmatch(line).group(2)) in before["workers"], line


# ---------------------------------------------------------------------------
# RPM spec
# ---------------------------------------------------------------------------

def test_rpm_spec_is_clean_under_rpmlint():
    """`rpmlint contrib/rpm/drover.spec` (which also reads
    contrib/rpm/drover.rpmlintrc, whose two filters say why) reports
    0 errors and 0 warnings."""
    rpmlint = need("rpmlint", "rpmlint")
    result = run([rpmlint, SPEC])
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b0 errors, 0 warnings\b", result.stdout), result.stdout + result.stderr


def test_rpm_spec_follows_the_install_layout():
    """What the spec's %files lists is what `make install` lays out (the
    FHS paths of ARCHITECTURE §10), and config files are noreplace."""
    spec = SPEC.read_text()
    version = re.search(r"^Version:\s*(\S+)", spec, re.M).group(1)
    assert re.search(rf"^## \[{re.escape(version)}\]|^## \[Unreleased\]", (REPO / "CHANGELOG.md").read_text(), re.M)
    for line in ("%config(noreplace) %{_sysconfdir}/drover/drover.conf",
                 "%config(noreplace) %{_sysconfdir}/drover/pool.d/*.conf",
                 "%config(noreplace) %{_sysconfdir}/logrotate.d/drover",
                 "%{_sbindir}/drover", "%{_bindir}/droverctl",
                 "%{_unitdir}/%{name}.service", "%{_tmpfilesdir}/%{name}.conf", "%{_sysusersdir}/%{name}.conf",
                 "%systemd_post %{name}.service", "%systemd_preun %{name}.service",
                 "%systemd_postun_with_restart %{name}.service"):
        assert line in spec, line
    for page in MAN_PAGES:
        section = page.suffix[1:]
        assert f"%{{_mandir}}/man{section}/{page.name}*" in spec, page.name


# ---------------------------------------------------------------------------
# man pages
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda p: p.name)
def test_man_page_formats_without_warnings(page):
    """`man --warnings -l PAGE` (groff -ww) prints nothing on stderr, and the
    page's .TH names it."""
    man = need("man", "man-db")
    result = run([man, "--warnings", "-l", page], env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat"})
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    name, section = page.name.rsplit(".", 1)
    assert re.search(rf"^\.TH {re.escape(name.upper())} {section} ", page.read_text(), re.M)
    assert "SEE ALSO" in result.stdout


def test_drover_man_page_documents_every_flag():
    """Every long option `drover --help` lists is in drover(8)."""
    from conftest import DROVER_BIN
    if not os.path.exists(DROVER_BIN):
        pytest.skip("drover is not built")
    help_text = run([DROVER_BIN, "--help"]).stdout
    page = (CONTRIB / "man" / "drover.8").read_text().replace("\\-", "-")
    flags = set(re.findall(r"(--[a-z][a-z-]+)", help_text))
    assert "--fpm-config" in flags
    for flag in sorted(flags):
        assert flag in page, f"drover(8) does not document {flag}"


# ---------------------------------------------------------------------------
# systemd
# ---------------------------------------------------------------------------

def unit_settings(path):
    settings = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def assert_unit(path, expected):
    """Each setting of `expected` is set once in the unit, to that value;
    returns all the unit's settings."""
    settings = unit_settings(path)
    for key, value in expected.items():
        assert settings.get(key) == [value], (path.name, key, settings.get(key))
    return settings


def test_systemd_units_verify(workdir):
    """`systemd-analyze verify` accepts drover.service and drover.socket.
    The binary is not installed here, so the units are checked as copies
    whose /usr/sbin/drover is the built one; nothing else is changed."""
    analyze = need("systemd-analyze", "systemd")
    from conftest import DROVER_BIN
    if not os.path.exists(DROVER_BIN):
        pytest.skip("drover is not built")
    units = workdir / "units"
    units.mkdir()
    for unit in (SERVICE, SOCKET):
        (units / unit.name).write_text(unit.read_text().replace("/usr/sbin/drover", DROVER_BIN))
    result = run([analyze, "verify", "--man=no", units / "drover.service", units / "drover.socket"])
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_service_unit_keeps_what_drover_needs():
    """The choices the unit's comments explain, pinned down."""
    s = assert_unit(SERVICE, {
        "Type": "notify",
        "ExecStart": "/usr/sbin/drover -F -y /etc/drover/drover.conf",
        "ExecStartPre": "/usr/sbin/drover -t -y /etc/drover/drover.conf",
        "ExecReload": "/bin/kill -USR2 $MAINPID",
        "KillMode": "mixed",
        "RuntimeDirectory": "drover",
        "LogsDirectory": "drover",
        # drover.socket's socket lives in /run/drover: it must survive a stop.
        "RuntimeDirectoryPreserve": "yes",
    })
    families = s["RestrictAddressFamilies"][0].split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} <= set(families)
    for forbidden in ("MemoryDenyWriteExecute", "NoNewPrivileges", "User", "DynamicUser", "PrivateUsers"):
        assert forbidden not in s, f"{forbidden}= would break pools (see the unit's comments)"
    # A deny list only, leaving chroot (@mount), setuid & co. (@privileged),
    # rlimits (@resources) and ptrace (@debug).
    for filters in s.get("SystemCallFilter", []):
        assert filters.startswith("~"), filters
        for kept in ("@mount", "@privileged", "@resources", "@debug", "@system-service", "chroot"):
            assert kept not in filters, kept
    dropped = s["CapabilityBoundingSet"][0]
    assert dropped.startswith("~")
    for kept in ("CAP_SETUID", "CAP_SETGID", "CAP_SYS_CHROOT", "CAP_SYS_ADMIN", "CAP_KILL", "CAP_CHOWN"):
        assert kept not in dropped, kept
    text = SERVICE.read_text()
    assert "Type=notify-reload" in text and "253" in text, "the notify-reload note is missing"


def test_socket_unit_names_the_pool():
    assert_unit(SOCKET, {"ListenStream": "/run/drover/www.sock", "FileDescriptorName": "www",
                         "Service": "drover.service", "SocketMode": "0660"})


def test_tmpfiles_and_sysusers_apply_to_a_root(workdir):
    """systemd-tmpfiles and systemd-sysusers with --root: /run/drover 0755,
    /var/log/drover 0750, a `drover` system user and group."""
    tmpfiles = need("systemd-tmpfiles", "systemd")
    sysusers = need("systemd-sysusers", "systemd")
    root = workdir / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_text("")
    result = run([tmpfiles, f"--root={root}", "--create", CONTRIB / "tmpfiles.d" / "drover.conf"])
    assert result.returncode == 0, result.stderr
    assert (root / "run/drover").stat().st_mode & 0o7777 == 0o755
    assert (root / "var/log/drover").stat().st_mode & 0o7777 == 0o750
    result = run([sysusers, f"--root={root}", CONTRIB / "sysusers.d" / "drover.conf"])
    assert result.returncode == 0, result.stderr
    user = [line for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("drover:")]
    assert len(user) == 1, (root / "etc/passwd").read_text()
    fields = user[0].split(":")
    assert int(fields[2]) < 1000 and fields[6].endswith("nologin"), user
    assert any(line.startswith("drover:") for line in (root / "etc/group").read_text().splitlines())


# ---------------------------------------------------------------------------
# web-server snippets
# ---------------------------------------------------------------------------

def test_nginx_snippet_passes_nginx_t(workdir):
    nginx = need("nginx", "nginx-light")
    conf_dir = workdir / "nginx"
    conf_dir.mkdir()
    shutil.copy("/etc/nginx/fastcgi_params", conf_dir / "fastcgi_params")
    (conf_dir / "nginx.conf").write_text(f"""\
pid {conf_dir}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
    client_body_temp_path {conf_dir}; fastcgi_temp_path {conf_dir}; proxy_temp_path {conf_dir};
    scgi_temp_path {conf_dir}; uwsgi_temp_path {conf_dir};
    server {{
        listen 127.0.0.1:1;
        root {workdir}/www;
        include {CONTRIB}/nginx/drover-php.conf;
    }}
}}
""")
    result = run([nginx, "-t", "-p", conf_dir, "-c", conf_dir / "nginx.conf"])
    assert result.returncode == 0, result.stderr


def test_apache_snippet_passes_apache2_t(workdir):
    apache2 = need("apache2", "apache2")
    modules = "/usr/lib/apache2/modules"
    conf = workdir / "apache2.conf"
    conf.write_text("".join(f"LoadModule {m}_module {modules}/mod_{m}.so\n"
                            for m in ("mpm_event", "authz_core", "authz_host", "setenvif", "proxy", "proxy_fcgi")) +
                    f"ServerRoot /etc/apache2\nServerName localhost\nPidFile {workdir}/apache2.pid\n"
                    f"ErrorLog /dev/null\nListen 127.0.0.1:1\nInclude {CONTRIB}/apache/drover.conf\n")
    result = run([apache2, "-t", "-f", conf])
    assert result.returncode == 0 and "Syntax OK" in result.stderr, result.stderr


def test_lighttpd_snippet_passes_lighttpd_tt(workdir):
    lighttpd = need("lighttpd", "lighttpd")
    conf = workdir / "lighttpd.conf"
    conf.write_text(f'server.document-root = "{workdir}/www"\nserver.port = 1\n'
                    f'server.modules = ( "mod_access" )\ninclude "{CONTRIB}/lighttpd/drover.conf"\n')
    result = run([lighttpd, "-tt", "-f", conf])
    assert result.returncode == 0, result.stdout + result.stderr


def test_caddyfile_passes_caddy_validate():
    caddy = need("caddy", "caddy")
    result = run([caddy, "validate", "--adapter", "caddyfile", "--config", CONTRIB / "caddy" / "Caddyfile"],
                 env={**os.environ, "HOME": "/tmp", "XDG_DATA_HOME": "/tmp", "XDG_CONFIG_HOME": "/tmp"})
    assert result.returncode == 0, result.stdout + result.stderr
