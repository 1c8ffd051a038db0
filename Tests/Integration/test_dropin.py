"""php-fpm drop-in: Debian's stock php-fpm configuration run unchanged by
Drover behind nginx; php_value & co. as PHP sees them; security.limit_extensions.

The stock test uses the installed files as they are (/etc/php/8.2/fpm, the
socket /run/php/php8.2-fpm.sock, the pid file, /var/log/php8.2-fpm.log), so it
needs root and php8.2-fpm. A php-fpm that was running is stopped for the test
and started again afterwards.
"""

import contextlib
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (DROVER_BIN, FCGIWRAP_BIN, IS_ROOT, NGINX_BIN, NginxSite, fcgi_request, http_request,
                      pid_alive, pool_section, proc_comm, wait_for, workers_of)

STOCK_CONF = "/etc/php/8.2/fpm/php-fpm.conf"
STOCK_SOCK = "/run/php/php8.2-fpm.sock"
STOCK_PID = "/run/php/php8.2-fpm.pid"
STOCK_LOG = "/var/log/php8.2-fpm.log"
PHP_FPM_BIN = "/usr/sbin/php-fpm8.2"


def have_www_data():
    try:
        pwd.getpwnam("www-data")
        return True
    except KeyError:
        return False


needs_stock = pytest.mark.skipif(
    not (IS_ROOT and os.path.exists(STOCK_CONF) and os.path.exists(NGINX_BIN) and have_www_data()
         and os.path.exists("/etc/nginx/snippets/fastcgi-php.conf")),
    reason="needs root, php8.2-fpm's stock configuration, nginx and the www-data user")


def read_pid(path):
    with contextlib.suppress(OSError, ValueError):
        return int(Path(path).read_text().split()[0])
    return None


@pytest.fixture
def stock_slot():
    """Makes the stock pid file and socket free for the test: a running
    php-fpm is stopped (SIGQUIT, as its init script does) and started again
    at teardown, so the machine is left as it was."""
    os.makedirs("/run/php", exist_ok=True)
    pid = read_pid(STOCK_PID)
    was_running = bool(pid and pid_alive(pid) and proc_comm(pid).startswith("php-fpm"))
    if was_running:
        os.kill(pid, signal.SIGQUIT)
        wait_for(lambda: not pid_alive(pid), timeout=20, what="the running php-fpm to stop")
    yield
    if was_running and not pid_alive(read_pid(STOCK_PID) or 0):
        subprocess.run([PHP_FPM_BIN, "--fpm-config", STOCK_CONF], timeout=30, check=False,
                       stdin=subprocess.DEVNULL, capture_output=True)


def log_since(offset):
    with contextlib.suppress(OSError), open(STOCK_LOG, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")
    return ""


STOCK_SITE = """
        root {root};
        index index.php;
        location ~ \\.php(/|$) {{
            include snippets/fastcgi-php.conf;
            fastcgi_pass unix:/run/php/php8.2-fpm.sock;
        }}
"""

IDENTITY_PHP = """<?php
header("X-Drop-In: yes");
echo "sapi=", PHP_SAPI, " user=", posix_getpwuid(posix_geteuid())["name"],
     " script=", $_SERVER["SCRIPT_NAME"], " path_info=", $_SERVER["PATH_INFO"] ?? "", "\\n";
"""


@needs_stock
def test_debian_stock_php_fpm_conf_serves_php_through_nginx(workdir, stock_slot):
    www = workdir / "www"
    (www / "identity.php").write_text(IDENTITY_PHP)
    (www / "notes.txt").write_text("<?php echo 'must not run';\n")
    offset = os.path.getsize(STOCK_LOG) if os.path.exists(STOCK_LOG) else 0

    # Exactly as an init script would run php-fpm: the stock file, daemonized, as root.
    started = subprocess.run([DROVER_BIN, "-y", STOCK_CONF], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL)
    assert started.returncode == 0, started
    master = None
    nginx = None
    try:
        wait_for(lambda: read_pid(STOCK_PID), what="the stock pid file")
        master = read_pid(STOCK_PID)
        wait_for(lambda: "ready to handle connections" in log_since(offset), what="the ready line in " + STOCK_LOG)
        wait_for(lambda: os.path.exists(STOCK_SOCK), what=STOCK_SOCK)

        # The stock pool: a socket for www-data, and pm = dynamic starting 2 workers as www-data.
        st = os.stat(STOCK_SOCK)
        www_data = pwd.getpwnam("www-data")
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (www_data.pw_uid, www_data.pw_gid, 0o660)
        wait_for(lambda: len(workers_of(master)) == 2, what="pm.start_servers = 2 workers")

        nginx = NginxSite(workdir, STOCK_SITE.format(root=www), user="www-data").start()
        r = http_request(nginx.port, "/identity.php")
        assert r.status == 200, (r, nginx.error_log())
        assert r.headers.get("x-drop-in") == "yes"
        assert r.text == "sapi=cgi-fcgi user=www-data script=/identity.php path_info=\n"
        # Debian's snippet splits PATH_INFO off.
        r = http_request(nginx.port, "/identity.php/some/path")
        assert r.status == 200 and r.text.endswith("path_info=/some/path\n"), r
        for _ in range(20):
            assert http_request(nginx.port, "/identity.php").status == 200

        # security.limit_extensions (stock: unset, so .php .phar) guards the socket itself.
        r = fcgi_request(STOCK_SOCK, str(www / "notes.txt"))
        assert r.status == 403 and r.body == b"Access denied.\n", r
        denied = f"Access to the script '{www / 'notes.txt'}' has been denied (see security.limit_extensions)"
        wait_for(lambda: denied in log_since(offset), what="the access denied notice")

        workers = workers_of(master)
        assert workers and all(pwd.getpwuid(os.stat(f"/proc/{p}").st_uid).pw_name == "www-data" for p in workers)
    finally:
        if nginx:
            nginx.stop()
        if master and pid_alive(master):
            os.kill(master, signal.SIGQUIT)
            wait_for(lambda: not pid_alive(master), timeout=20, what="drover to stop")
    assert not os.path.exists(STOCK_PID), "the pid file is removed"
    assert not os.path.exists(STOCK_SOCK), "the socket is removed"
    assert "exiting, bye-bye!" in log_since(offset)


INI_PHP = """<?php
foreach (["memory_limit", "display_errors", "error_reporting", "log_errors", "precision"] as $k)
    echo $k, "=", ini_get($k), "\\n";
"""

INI_SETTINGS = """
php_admin_value[memory_limit] = 77M
php_flag[display_errors] = on
php_value[error_reporting] = E_ALL & ~E_NOTICE
php_admin_flag[log_errors] = off
php_value[precision] = 10
"""


def test_php_values_and_flags_reach_php(drover_factory, workdir):
    (workdir / "www" / "ini.php").write_text(INI_PHP)
    d = drover_factory()
    sock = d.sock("www")
    d.write_config([pool_section("www", sock, max_children=1, extra=INI_SETTINGS)])
    d.start(statuses=[(sock, 1)])
    r = fcgi_request(sock, str(workdir / "www" / "ini.php"))
    assert r.status == 200, r
    # E_ALL & ~E_NOTICE is evaluated by PHP, as php-fpm does: 32767 & ~8.
    assert r.text == ("memory_limit=77M\ndisplay_errors=1\nerror_reporting=32759\n"
                                               "log_errors=0\nprecision=10\n"), r


def test_limit_extensions_default_refuses_other_files(drover_factory, workdir):
    www = workdir / "www"
    (www / "ok.php").write_text("<?php echo 'ran';\n")
    (www / "upload.jpg").write_text("<?php echo 'uploaded code ran';\n")
    (www / "tool.phar").write_text("<?php echo 'phar ran';\n")
    d = drover_factory()
    php, custom, off = d.sock("www"), d.sock("custom"), d.sock("off")
    d.write_config([
        pool_section("www", php, max_children=1),
        pool_section("custom", custom, max_children=1, status_path="/status-c", ping_path="/ping-c",
                     extra="security.limit_extensions = .jpg\n"),
        pool_section("off", off, max_children=1, status_path="/status-o", ping_path="/ping-o",
                     extra="security.limit_extensions =\n"),
    ])
    d.start(statuses=[(php, 1)])
    d.wait_workers(custom, 1, path="/status-c")
    d.wait_workers(off, 1, path="/status-o")

    assert fcgi_request(php, str(www / "ok.php")).body == b"ran"
    assert fcgi_request(php, str(www / "tool.phar")).body == b"phar ran"
    for name in ("upload.jpg", "upload.jpg/x.php", "upload.jpg\0.php"):
        r = fcgi_request(php, str(www / name))
        assert r.status == 403 and r.body == b"Access denied.\n", (name, r)
        assert b"uploaded code ran" not in r.raw
    # A script that does not exist is the app's 404, as in php-fpm.
    assert fcgi_request(php, str(www / "missing.txt")).status == 404
    wait_for(lambda: f"NOTICE: [pool www] Access to the script '{www / 'upload.jpg'}' has been denied "
             "(see security.limit_extensions)" in d.log_text(), what="the notice")

    r = fcgi_request(custom, str(www / "upload.jpg"))
    assert r.body == b"uploaded code ran", r
    assert fcgi_request(custom, str(www / "ok.php")).status == 403
    # Empty: no check at all.
    assert fcgi_request(off, str(www / "upload.jpg")).body == b"uploaded code ran"
    assert "[pool off] Access" not in d.log_text()


def test_limit_extensions_does_not_apply_to_other_apps(drover_factory, workdir):
    d = drover_factory()
    cgi = d.sock("cgi")
    d.write_config([pool_section("cgi", cgi, max_children=1, command=f"{FCGIWRAP_BIN} -f")])
    d.start(sockets=[cgi])
    d.wait_workers(cgi, 1)
    r = fcgi_request(cgi, str(workdir / "www" / "cgi-bin" / "hello.cgi"))
    assert r.status == 200, r
