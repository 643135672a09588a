"""The released Restormer checkpoints by name (:func:`resolve`, ``basicsr weights``): downloaded once into a cache
(:func:`cache_dir`) from the release or a mirror (:func:`base_url`), resumed after a broken transfer, and verified
against the released architecture before use (:func:`download`; docs/weights.md).

Downloads use ``requests`` (streaming, ``Range``) and ``tqdm`` (progress); torch.hub's ``download_url_to_file`` cannot
resume a partial file.
"""
import os
import shutil
import sys
from os import path as osp
from typing import Callable, List, Optional
from urllib.parse import unquote, urlparse

from restormer_arch.archs.presets import RELEASES, Release
from restormer_arch.errors import UserError

__all__ = ['RELEASES', 'RELEASE_URL', 'CACHE_ENV', 'URL_ENV', 'Release', 'WeightsError', 'cache_dir', 'base_url',
           'release_url', 'resolve', 'fetch', 'download', 'verify_release', 'copy_into']

RELEASE_URL = 'https://github.com/swz30/Restormer/releases/download/v1.0'
CACHE_ENV = 'RESTORMER_WEIGHTS_DIR'
URL_ENV = 'RESTORMER_WEIGHTS_URL'
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30  # connect / between-bytes timeout, not a limit on the whole transfer
PARTIAL_SUFFIX = '.partial'
NAMES = ', '.join(RELEASES)  # for messages


class WeightsError(UserError, ValueError):
    """A checkpoint name or file cannot be used (unknown name, failed or refused download); the message says why."""


def cache_dir() -> str:
    """The folder of downloaded releases: ``$RESTORMER_WEIGHTS_DIR``, else torch hub's ``checkpoints/restormer``."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return osp.abspath(osp.expanduser(override))
    import torch.hub

    return osp.join(torch.hub.get_dir(), 'checkpoints', 'restormer')


def base_url() -> str:
    """Where the release files are fetched from: ``$RESTORMER_WEIGHTS_URL``, else :data:`RELEASE_URL`."""
    return (os.environ.get(URL_ENV) or RELEASE_URL).rstrip('/')


def _check_name(name: str) -> Release:
    if name not in RELEASES:
        raise WeightsError(f'{name!r} is not a released Restormer checkpoint; the names are: {NAMES}.')
    return RELEASES[name]


def release_url(name: str) -> str:
    """URL (or mirror path) of a released checkpoint: ``<base_url()>/<name>.pth``.

    Args:
        name: A key of :data:`RELEASES`.

    Returns:
        ``<base>/<name>.pth``.
    """
    _check_name(name)
    return f'{base_url()}/{name}.pth'


# ------------------------------------------------------------------------------------------------------ verification
def verify_release(path: str, name: str) -> None:
    """Check that ``path`` holds the parameters of the released ``name`` model: safe to load, loads strictly.

    Args:
        path: A downloaded file.
        name: A key of :data:`RELEASES`.

    Raises:
        WeightsError: Not a readable checkpoint, unsafe pickle, or keys/shapes differ from the release's architecture.
    """
    from restormer_arch import checkpoint
    from restormer_arch.archs.restormer_arch import Restormer

    release = _check_name(name)
    try:
        state_dict, _ = checkpoint.load_state_dict(path, what=f'released checkpoint {name}')
    except checkpoint.CheckpointError as err:
        raise WeightsError(str(err)) from None
    network = Restormer(**release.arch_options)
    report = checkpoint.compare_state_dicts(network.state_dict(), state_dict)[1]
    if report:
        raise WeightsError(f'{path} is not the released {name} model ({release.arch_options or "default"} '
                           f'architecture): {report}')
    network.load_state_dict(state_dict, strict=True)


# --------------------------------------------------------------------------------------------------------- transfer
def _http_download(url: str, partial: str, label: str, progress: bool) -> None:
    """Append the rest of ``url`` to ``partial`` (Range request when part of it is there)."""
    import requests
    import urllib3
    from tqdm import tqdm

    have = osp.getsize(partial) if osp.exists(partial) else 0
    # identity: byte ranges must count the file's bytes, not those of a compressed stream.
    headers = {'Accept-Encoding': 'identity', **({'Range': f'bytes={have}-'} if have else {})}
    try:
        response = requests.get(url, headers=headers, stream=True, timeout=TIMEOUT_S)
    except requests.RequestException as err:
        raise WeightsError(f'{url}: cannot connect ({err}). Set {URL_ENV} to a mirror, or copy the file into '
                           f'{osp.dirname(partial)}.') from None
    with response:
        if response.status_code == 416 and have:
            # The partial file is not a prefix the server can continue (complete already, or from another version).
            os.remove(partial)
            return _http_download(url, partial, label, progress)
        if response.status_code not in (200, 206):
            raise WeightsError(f'{url}: HTTP {response.status_code} {response.reason}. Check the name, or set '
                               f'{URL_ENV} to a mirror that serves <name>.pth.')
        offset = have if response.status_code == 206 else 0  # a server that ignores Range sends the whole file
        content_range = response.headers.get('Content-Range', '')
        if offset and not content_range.startswith(f'bytes {have}-'):
            os.remove(partial)  # the next call starts from byte 0 instead of failing the same way again
            raise WeightsError(f'{url}: the server resumed at {content_range!r}, not at byte {have}; the partial file '
                               'was deleted, run the same command again.')
        length = response.headers.get('Content-Length')
        total = offset + int(length) if length and length.isdigit() else None
        bar = tqdm(total=total, initial=offset, unit='B', unit_scale=True, unit_divisor=1024, desc=label,
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            with open(partial, 'ab' if offset else 'wb') as f, bar:
                # read1 hands over whatever has arrived, so a broken transfer keeps every byte received.
                for chunk in iter(lambda: response.raw.read1(CHUNK_BYTES), b''):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
            raise WeightsError(f'{url}: the transfer broke off after {osp.getsize(partial)} bytes ({err}); run the '
                               'same command again to resume it.') from None
    if total is not None and osp.getsize(partial) != total:
        raise WeightsError(f'{url}: got {osp.getsize(partial)} of {total} bytes; run the same command again to '
                           'resume.')


def download(url: str, path: str, verify: Optional[Callable[[str], None]] = None, progress: bool = True) -> str:
    """Download ``url`` to ``path``: resumable, verified, atomic.

    The bytes go to ``path + '.partial'``; an existing partial file is continued with a ``Range`` request. Once
    complete, ``verify(partial)`` runs (a refused file is deleted) and the file is renamed to ``path``.

    Args:
        url: ``http(s)://`` URL, ``file://`` URL or a local file path.
        path: Destination file (its folder is created).
        verify: Raises :class:`WeightsError` for a file that must not be kept.
        progress: Show a progress bar on stderr.

    Returns:
        ``path``.

    Raises:
        WeightsError: HTTP error, broken transfer (the partial file is kept for the next call) or refused file.
    """
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    partial = path + PARTIAL_SUFFIX
    parsed = urlparse(url)
    source = unquote(parsed.path) if parsed.scheme == 'file' else url  # a file:// URL or a plain path: a mirror folder
    if parsed.scheme in ('http', 'https'):
        _http_download(url, partial, osp.basename(path), progress)
    elif osp.isfile(source):
        shutil.copyfile(source, partial)
    else:
        raise WeightsError(f'{url}: no such file in the mirror folder ({URL_ENV}).')
    if verify is not None:
        try:
            verify(partial)
        except WeightsError as err:
            os.remove(partial)  # a complete but wrong file: resuming it could never help
            raise WeightsError(f'{url}: downloaded file refused: {err}') from None
    os.replace(partial, path)
    return path


def fetch(name: str, progress: bool = True) -> str:
    """The cached file of a released checkpoint, downloaded (and verified) on first use.

    Args:
        name: A key of :data:`RELEASES`.
        progress: Show a progress bar while downloading.

    Returns:
        The local path, ``<cache_dir()>/<name>.pth``.

    Raises:
        WeightsError: Unknown name, failed download, or a file that is not the released model.
    """
    _check_name(name)
    path = osp.join(cache_dir(), f'{name}.pth')
    if osp.isfile(path):
        return path  # verified before it was moved into place
    return download(release_url(name), path, verify=lambda p: verify_release(p, name), progress=progress)


def resolve(value: str, progress: bool = True) -> str:
    """A ``--weights`` value as a local file: an existing file as is, a released name fetched into the cache.

    Args:
        value: A checkpoint path, or a key of :data:`RELEASES` (e.g. ``deraining``).
        progress: Show a progress bar while downloading.

    Returns:
        Path of a checkpoint file.

    Raises:
        WeightsError: Neither an existing file nor a released name, or the download failed.
    """
    if osp.isfile(value):
        return value
    if value in RELEASES:
        return fetch(value, progress)
    if osp.isdir(value):
        raise WeightsError(f'--weights {value}: is a folder, not a checkpoint file; name the .pth file inside it.')
    raise WeightsError(f'--weights {value}: no such file, and not a released checkpoint name ({NAMES}).')


def copy_into(name: str, folder: str, progress: bool = True) -> str:
    """Fetch a release and place it as ``<folder>/<name>.pth`` (hard link when possible, else an atomic copy).

    Args:
        name: A key of :data:`RELEASES`.
        folder: Destination folder (created), e.g. ``pretrained_models``.
        progress: Show a progress bar while downloading.

    Returns:
        The destination path.
    """
    source = fetch(name, progress)
    os.makedirs(folder, exist_ok=True)
    target = osp.join(folder, f'{name}.pth')
    if osp.isfile(target) and osp.samefile(source, target):
        return target
    tmp = osp.join(folder, f'.{name}.pth.tmp{os.getpid()}')
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or no hard links
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return target


# ------------------------------------------------------------------------------------------------------------- CLI
def _build_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog='basicsr weights',
        description='List the released Restormer checkpoints, or fetch them into a folder (default pretrained_models/, '
                    'where options/test/*.yml look). Downloads are cached (see docs/weights.md).')
    parser.add_argument('names', nargs='*', metavar='NAME', help="released names to fetch, or 'all'")
    parser.add_argument('-o', '--output', default='pretrained_models', help='destination folder (default: %(default)s)')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def _listing() -> List[str]:
    width = max(map(len, RELEASES))
    lines = [f'cache: {cache_dir()}', f'source: {base_url()}', '']
    for name, release in RELEASES.items():
        state = 'cached' if osp.isfile(osp.join(cache_dir(), f'{name}.pth')) else '-'
        lines.append(f'{name:<{width}}  {state:<6}  {release.about}  (options/test/{release.test_options})')
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    """``basicsr weights [NAME ... | all] [-o FOLDER]``: list the releases, or fetch them.

    Args:
        argv: Arguments after ``weights``.

    Returns:
        Exit code: 0, or 1 when a download failed.

    Raises:
        WeightsError: Unknown names (``basicsr`` prints it as one line and exits 2), before any download.
    """
    args = _build_parser().parse_args(argv)
    if not args.names:
        print('\n'.join(_listing()))
        return 0
    names = list(RELEASES) if args.names == ['all'] else args.names
    unknown = [n for n in names if n not in RELEASES]
    if unknown:
        raise WeightsError(f'unknown name(s) {", ".join(unknown)}; the names are: {NAMES} (or all).')
    failed = 0
    for name in names:
        try:
            print(copy_into(name, args.output, progress=not args.no_progress))
        except WeightsError as err:
            print(f'basicsr weights: {err}', file=sys.stderr)
            failed += 1
    return 1 if failed else 0
