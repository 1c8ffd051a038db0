"""Real applications end to end: nginx → Drover → the app, as packaged by Debian.

- DokuWiki (package dokuwiki) on php-cgi: pages render, an edit saves.
- git over HTTP: `git clone` and `git push` through fcgiwrap and
  `git http-backend`.

Each runs in its own work directory: DokuWiki gets a copy of its
configuration and data (the installed wiki is not touched), git a bare
repository made by the test.
"""

import html
import http.client
import os
import pwd
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from conftest import FCGIWRAP_BIN, IS_ROOT, NGINX_BIN, NginxSite, TIMEOUT, pool_section

DOKUWIKI = Path("/usr/share/dokuwiki")
DOKUWIKI_CONF = Path("/etc/dokuwiki")
DOKUWIKI_DATA = Path("/var/lib/dokuwiki/data")
GIT_BIN = shutil.which("git") or "/usr/bin/git"
GIT_HTTP_BACKEND = "/usr/lib/git-core/git-http-backend"


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


# ---------------------------------------------------------------------------
# DokuWiki
# ---------------------------------------------------------------------------

needs_dokuwiki = pytest.mark.skipif(
    not (IS_ROOT and (DOKUWIKI / "doku.php").exists() and DOKUWIKI_CONF.is_dir() and DOKUWIKI_DATA.is_dir()
         and os.path.exists(NGINX_BIN) and user_exists("www-data")),
    reason="needs root, the dokuwiki package, nginx and the www-data user")

DOKUWIKI_SITE = """
        root {root};
        index doku.php;
        location ~ /(conf|bin|inc|vendor)/ {{ deny all; }}
        location ~ \\.php$ {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{sock};
        }}
"""

# DokuWiki reads DOKU_CONF when it is already defined (Debian's
# inc/preload.php); PHP's auto_prepend_file defines it before doku.php runs,
# so the wiki uses the test's copy of its configuration and data.
PREPEND = "<?php define('DOKU_CONF', '{conf}/');\n"

LOCAL_CONF = """
$conf['useacl'] = 0;
$conf['savedir'] = '{data}';
$conf['userewrite'] = 0;
"""


class Browser:
    """http.client with the cookies a PHP session needs."""

    def __init__(self, port):
        self.port = port
        self.cookies = {}

    def request(self, method, path, form=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        headers = {}
        body = None
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if form is not None:
            body = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            for name, value in resp.getheaders():
                if name.lower() == "set-cookie":
                    k, _, v = value.split(";", 1)[0].partition("=")
                    if v == "deleted":
                        self.cookies.pop(k.strip(), None)
                    else:
                        self.cookies[k.strip()] = v
            return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read().decode(errors="replace")
        finally:
            conn.close()


def hidden_fields(form_html):
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", form_html):
        attrs = dict((k, html.unescape(v)) for k, v in re.findall(r'(\w+)="([^"]*)"', tag))
        if attrs.get("type") == "hidden" and "name" in attrs:
            fields[attrs["name"]] = attrs.get("value", "")
    return fields


@needs_dokuwiki
def test_dokuwiki_renders_and_saves_an_edit(drover_factory, workdir):
    www_data = pwd.getpwnam("www-data")
    conf, data = workdir / "dokuwiki-conf", workdir / "dokuwiki-data"
    shutil.copytree(DOKUWIKI_CONF, conf, symlinks=False)
    shutil.copytree(DOKUWIKI_DATA, data, symlinks=False)
    with open(conf / "local.php", "a") as f:
        f.write(LOCAL_CONF.format(data=data))
    for path in [data, *data.rglob("*")]:
        os.lchown(path, www_data.pw_uid, www_data.pw_gid)
    prepend = workdir / "prepend.php"
    prepend.write_text(PREPEND.format(conf=conf))

    d = drover_factory()
    sock = d.sock("wiki")
    d.write_config([pool_section("wiki", sock, max_children=2, extra=f"""
        user = www-data
        group = www-data
        php_admin_value[auto_prepend_file] = {prepend}
        catch_workers_output = yes
    """)])
    d.start(statuses=[(sock, 2)])
    nginx = NginxSite(workdir, DOKUWIKI_SITE.format(root=DOKUWIKI, sock=sock)).start()
    try:
        b = Browser(nginx.port)
        status, _, page = b.request("GET", "/doku.php?id=wiki:welcome")
        assert status == 200, (page[:2000], d.log_text())
        assert 'id="dokuwiki__content"' in page and "Debian DokuWiki" in page
        # The wiki's own assets come through PHP as well.
        status, headers, css = b.request("GET", "/lib/exe/css.php?t=dokuwiki")
        assert status == 200 and headers.get("content-type", "").startswith("text/css"), css[:300]

        status, _, page = b.request("GET", "/doku.php?id=start")
        assert status == 200 and 'id="dokuwiki__content"' in page, page[:2000]

        status, _, page = b.request("GET", "/doku.php?id=drover:test&do=edit")
        assert status == 200, page[:500]
        form = re.search(r'<form id="dw__editform".*?</form>', page, re.S)
        assert form, page[:3000]
        fields = hidden_fields(form.group(0))
        # DokuWiki checks the token of logged-in users only (empty with useacl = 0), but it is posted back.
        assert "sectok" in fields and fields.get("changecheck"), fields
        text = "====== Drover ======\nSaved through nginx, Drover and php-cgi.\n"
        fields.update({"wikitext": text, "summary": "drover test", "do[save]": "Save"})
        status, headers, _ = b.request("POST", "/doku.php?id=drover:test", form=fields)
        assert status in (302, 303), (status, d.log_text())

        status, _, page = b.request("GET", "/doku.php?id=drover:test")
        assert status == 200
        assert "Saved through nginx, Drover and php-cgi." in page
        saved = data / "pages" / "drover" / "test.txt"
        assert saved.read_text() == text
        assert saved.stat().st_uid == www_data.pw_uid
        assert "PHP Fatal" not in d.log_text() and "PHP Warning" not in d.log_text(), d.log_text()
    finally:
        nginx.stop()


# ---------------------------------------------------------------------------
# git over HTTP
# ---------------------------------------------------------------------------

needs_git = pytest.mark.skipif(
    not (os.path.exists(GIT_BIN) and os.path.exists(GIT_HTTP_BACKEND) and os.path.exists(FCGIWRAP_BIN)
         and os.path.exists(NGINX_BIN)),
    reason="needs git, fcgiwrap and nginx")

GIT_SITE = """
        location ~ ^/git(/.*) {{
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {backend};
            fastcgi_param GIT_PROJECT_ROOT {root};
            fastcgi_param GIT_HTTP_EXPORT_ALL "";
            fastcgi_param PATH_INFO $1;
            fastcgi_pass unix:{sock};
        }}
"""


@needs_git
def test_git_clone_and_push_over_http(drover_factory, workdir):
    env = dict(os.environ, HOME=str(workdir), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0",
               GIT_AUTHOR_NAME="Drover Test", GIT_AUTHOR_EMAIL="test@example.invalid",
               GIT_COMMITTER_NAME="Drover Test", GIT_COMMITTER_EMAIL="test@example.invalid")

    def git(*args, cwd=workdir):
        out = subprocess.run([GIT_BIN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        return out.stdout

    root = workdir / "repos"
    root.mkdir()
    git("init", "-q", "--bare", "-b", "main", str(root / "project.git"))
    git("config", "http.receivepack", "true", cwd=root / "project.git")
    seed = workdir / "seed"
    git("init", "-q", "-b", "main", str(seed))
    (seed / "README").write_text("first\n")
    # A file larger than one FastCGI record and pipe buffer, so the pack streams.
    (seed / "blob.bin").write_bytes(os.urandom(300_000))
    git("add", ".", cwd=seed)
    git("commit", "-q", "-m", "first", cwd=seed)
    git("push", "-q", str(root / "project.git"), "main", cwd=seed)

    d = drover_factory()
    sock = d.sock("git")
    d.write_config([pool_section("git", sock, max_children=2, command=f"{FCGIWRAP_BIN} -f")])
    d.start(sockets=[sock])
    d.wait_workers(sock, 2)
    nginx = NginxSite(workdir, GIT_SITE.format(backend=GIT_HTTP_BACKEND, root=root, sock=sock)).start()
    try:
        url = f"http://127.0.0.1:{nginx.port}/git/project.git"
        git("clone", "-q", url, str(workdir / "clone1"))
        assert (workdir / "clone1" / "README").read_text() == "first\n"
        assert (workdir / "clone1" / "blob.bin").read_bytes() == (seed / "blob.bin").read_bytes()

        (workdir / "clone1" / "README").write_text("second\n")
        (workdir / "clone1" / "more.bin").write_bytes(os.urandom(200_000))
        git("add", ".", cwd=workdir / "clone1")
        git("commit", "-q", "-m", "second, pushed over HTTP", cwd=workdir / "clone1")
        git("push", "-q", "origin", "main", cwd=workdir / "clone1")
        assert git("log", "-1", "--format=%s", "main", cwd=root / "project.git").strip() == "second, pushed over HTTP"

        git("clone", "-q", url, str(workdir / "clone2"))
        assert (workdir / "clone2" / "README").read_text() == "second\n"
        assert git("ls-remote", url).count("refs/heads/main") == 1
    finally:
        nginx.stop()
