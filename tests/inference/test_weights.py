"""Released checkpoints by name (restormer_arch.weights, ``basicsr weights``): a real HTTP server on 127.0.0.1.

The served files have the full released architectures (every key and shape) but every parameter is a zero-stride view
of one shared number, so a file is ~50 kB. No test reaches the internet: the base URL always points at the local server
(or a local folder).
"""
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from restormer_arch import weights
from restormer_arch.archs.restormer_arch import Restormer

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAY = 'gaussian_gray_denoising_sigma25'
DUAL = 'dual_pixel_defocus_deblurring'


def release_bytes(tmp_path, arch_options, value=0.5, name='ckpt.pth'):
    """A checkpoint of the given architecture: real keys and shapes, all values ``value`` (tiny on disk)."""
    shared = torch.full((1,), value)
    state_dict = {k: shared.expand(v.shape) for k, v in Restormer(**arch_options).state_dict().items()}
    path = tmp_path / name
    torch.save({'params': state_dict}, path)
    return path.read_bytes()


class Server:
    """A threaded http.server: files by URL path, Range support, optional cut after some bytes, a request log."""

    def __init__(self):
        self.files = {}
        self.requests = []  # (path, Range header or None)
        self.cut_after = {}  # path -> bytes to send before closing the connection (once)
        self.ignore_range = False
        self.wrong_range_start = False  # answer a Range request with 206 for the whole file (a broken mirror)
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append((self.path, self.headers.get('Range')))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                range_header = self.headers.get('Range')
                if range_header and not server.ignore_range:
                    start = 0 if server.wrong_range_start else int(range_header.split('=')[1].split('-')[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header('Content-Range', f'bytes */{len(body)}')
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
                else:
                    self.send_response(200)
                self.send_header('Content-Length', str(len(body) - start))
                self.end_headers()
                cut = server.cut_after.pop(self.path, None)
                if cut is not None:
                    self.wfile.write(body[start:start + cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}/v1.0'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def env(tmp_path, server, monkeypatch):
    cache = tmp_path / 'cache'
    monkeypatch.setenv(weights.CACHE_ENV, str(cache))
    monkeypatch.setenv(weights.URL_ENV, server.url)
    return cache


def serve(server, tmp_path, name, arch_options=None, **kwargs):
    body = release_bytes(tmp_path, weights.RELEASES[name].arch_options if arch_options is None else arch_options,
                         **kwargs)
    server.files[f'/v1.0/{name}.pth'] = body
    return body


def test_every_release_has_a_test_option_file_and_urls(monkeypatch):
    monkeypatch.delenv(weights.URL_ENV, raising=False)
    assert len(weights.RELEASES) == 13
    for name, release in weights.RELEASES.items():
        assert (REPO_ROOT / 'options' / 'test' / release.test_options).is_file(), name
        assert weights.release_url(name) == f'{weights.RELEASE_URL}/{name}.pth'
    # The test option files look for exactly these names under pretrained_models/.
    wanted = set()
    for option_file in (REPO_ROOT / 'options' / 'test').glob('*.yml'):
        for line in option_file.read_text().splitlines():
            if 'pretrain_network_g:' in line:
                wanted.add(Path(line.split(':', 1)[1].strip()).stem)
    assert wanted == set(weights.RELEASES)


def test_released_name_downloads_once_into_the_cache(tmp_path, server, env):
    body = serve(server, tmp_path, GRAY)
    path = weights.resolve(GRAY, progress=False)
    assert Path(path) == env / f'{GRAY}.pth'
    assert Path(path).read_bytes() == body
    assert server.requests == [(f'/v1.0/{GRAY}.pth', None)]
    assert weights.resolve(GRAY, progress=False) == path
    assert len(server.requests) == 1  # cached: no second transfer
    network = Restormer(**weights.RELEASES[GRAY].arch_options)
    network.load_state_dict(torch.load(path, weights_only=True)['params'], strict=True)


@pytest.mark.parametrize('progress', [True, False])
def test_progress_bar_on_stderr_only_when_asked(tmp_path, server, env, capfd, progress):
    serve(server, tmp_path, GRAY)
    weights.fetch(GRAY, progress=progress)
    captured = capfd.readouterr()
    assert bool(captured.err.strip()) == progress
    assert captured.out == ''


def test_interrupted_transfer_resumes_with_a_range_request(tmp_path, server, env):
    body = serve(server, tmp_path, DUAL)
    server.cut_after[f'/v1.0/{DUAL}.pth'] = 20000
    with pytest.raises(weights.WeightsError):
        weights.fetch(DUAL, progress=False)
    partial = env / f'{DUAL}.pth.partial'
    assert partial.read_bytes() == body[:20000]
    assert not (env / f'{DUAL}.pth').exists()
    path = weights.fetch(DUAL, progress=True)
    assert server.requests[-1] == (f'/v1.0/{DUAL}.pth', 'bytes=20000-')
    assert Path(path).read_bytes() == body
    assert not partial.exists()


def test_server_ignoring_range_restarts_the_file(tmp_path, server, env):
    body = serve(server, tmp_path, GRAY)
    server.cut_after[f'/v1.0/{GRAY}.pth'] = 5000
    with pytest.raises(weights.WeightsError):
        weights.fetch(GRAY, progress=False)
    server.ignore_range = True
    assert Path(weights.fetch(GRAY, progress=False)).read_bytes() == body


def test_resume_at_the_wrong_offset_is_refused_and_restarted(tmp_path, server, env):
    body = serve(server, tmp_path, GRAY)
    server.cut_after[f'/v1.0/{GRAY}.pth'] = 5000
    with pytest.raises(weights.WeightsError):
        weights.fetch(GRAY, progress=False)
    server.wrong_range_start = True
    with pytest.raises(weights.WeightsError):
        weights.fetch(GRAY, progress=False)
    assert not any(env.glob(f'{GRAY}.pth*'))  # neither a spliced file nor a partial that cannot be continued
    assert Path(weights.fetch(GRAY, progress=False)).read_bytes() == body
    assert [r for _, r in server.requests] == [None, 'bytes=5000-', None]


def test_stale_partial_beyond_the_end_is_restarted(tmp_path, server, env):
    body = serve(server, tmp_path, GRAY)
    env.mkdir()
    (env / f'{GRAY}.pth.partial').write_bytes(b'x' * (len(body) + 10))
    assert Path(weights.fetch(GRAY, progress=False)).read_bytes() == body
    assert [r for _, r in server.requests] == [f'bytes={len(body) + 10}-', None]


def test_404_is_an_error_and_caches_nothing(server, env):
    with pytest.raises(weights.WeightsError):
        weights.fetch('deraining', progress=False)
    assert server.requests == [('/v1.0/deraining.pth', None)]
    assert not any(env.glob('deraining.pth*'))


@pytest.mark.parametrize('content', ['other_architecture', 'html'])
def test_file_that_does_not_load_strictly_is_refused_and_not_cached(tmp_path, server, env, content):
    if content == 'html':
        server.files[f'/v1.0/{GRAY}.pth'] = b'<html><body>rate limited</body></html>'
    else:  # a colour model served under the gray model's name
        serve(server, tmp_path, GRAY, arch_options=weights.RELEASES['real_denoising'].arch_options)
    with pytest.raises(weights.WeightsError):
        weights.resolve(GRAY, progress=False)
    assert not any(env.glob(f'{GRAY}.pth*'))
    # The next call downloads again (nothing bad was kept) and accepts a correct file.
    body = serve(server, tmp_path, GRAY)
    assert Path(weights.resolve(GRAY, progress=False)).read_bytes() == body
    assert len(server.requests) == 2


def test_existing_file_is_used_as_is_and_unknown_names_are_refused(tmp_path, server, env):
    own = tmp_path / 'mine.pth'
    own.write_bytes(release_bytes(tmp_path, {}, name='other.pth'))
    assert weights.resolve(str(own)) == str(own)
    with pytest.raises(weights.WeightsError):
        weights.resolve('derainng')
    with pytest.raises(weights.WeightsError):
        weights.resolve(str(tmp_path / 'missing.pth'))
    assert server.requests == []


def test_default_cache_is_torch_hub_checkpoints(tmp_path, monkeypatch):
    monkeypatch.delenv(weights.CACHE_ENV, raising=False)
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'th'))
    assert Path(weights.cache_dir()) == tmp_path / 'th' / 'hub' / 'checkpoints' / 'restormer'
    monkeypatch.delenv(weights.URL_ENV, raising=False)
    assert weights.base_url() == weights.RELEASE_URL


@pytest.mark.parametrize('scheme', ['folder', 'file_url'])
def test_offline_mirror_folder(tmp_path, monkeypatch, scheme):
    mirror = tmp_path / 'mirror'
    mirror.mkdir()
    body = release_bytes(tmp_path, weights.RELEASES['deraining'].arch_options)
    (mirror / 'deraining.pth').write_bytes(body)
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.setenv(weights.URL_ENV, str(mirror) if scheme == 'folder' else mirror.as_uri())
    assert Path(weights.resolve('deraining')).read_bytes() == body
    with pytest.raises(weights.WeightsError):
        weights.resolve('motion_deblurring')  # not in the mirror
    assert not (tmp_path / 'cache' / 'motion_deblurring.pth').exists()


def run_cli(args, tmp_path, server):
    env = {**os.environ, weights.CACHE_ENV: str(tmp_path / 'cache'), weights.URL_ENV: server.url,
           'PYTHONPATH': str(REPO_ROOT), 'OMP_NUM_THREADS': '1'}
    return subprocess.run([sys.executable, '-m', 'restormer_arch', 'weights', *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_lists_and_refuses_unknown_names(capsys, env):
    assert weights.main([]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in weights.RELEASES)
    with pytest.raises(weights.WeightsError):
        weights.main(['not_a_release'])


@pytest.mark.slow
def test_cli_prefetches_into_pretrained_models(tmp_path, server):
    body = serve(server, tmp_path, GRAY)
    fetched = run_cli([GRAY, '--no-progress'], tmp_path, server)
    assert fetched.returncode == 0, fetched.stderr
    target = tmp_path / 'pretrained_models' / f'{GRAY}.pth'
    assert target.read_bytes() == body
    assert (tmp_path / 'cache' / f'{GRAY}.pth').read_bytes() == body
    assert run_cli([GRAY, '--no-progress'], tmp_path, server).returncode == 0
    assert len(server.requests) == 1  # the second run copies from the cache
    missing = run_cli(['deraining', '--no-progress'], tmp_path, server)  # 404 on the server
    assert missing.returncode == 1
    assert not (tmp_path / 'pretrained_models' / 'deraining.pth').exists()
