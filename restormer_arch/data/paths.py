"""Listing and pairing the images of a dataset: folders, ``meta_info_file`` lists and BasicSR LMDBs.

A sample is a ``{'<key>_path': path}`` dict over the dataset's folders (``lq``/``gt``, ``lqL``/``lqR``/``gt``), GT
last. Pairing refuses the set-ups that would silently train or score the identity: an input folder (or LMDB) that is
the target's, a list entry that points outside the folders (absolute paths elsewhere, ``..``), pairs that are one
file.
"""
import os
import re
from os import path as osp
from typing import Any, Dict, List, Optional, Sequence, Set

from .image_io import IMAGE_EXTENSIONS

# How many offending names an error message lists before it summarises the rest.
_MAX_LISTED = 5
# BasicSR's extra meta_info columns after a name: " (h,w,c)" and an optional compression level.
_META_COLUMNS = re.compile(r'\s+\([^()\s]*\)(\s+\S+)?$')


def listing(names: Sequence[str]) -> str:
    """The first few names, sorted, and how many more (for error messages)."""
    shown = ', '.join(sorted(names)[:_MAX_LISTED])
    more = len(names) - _MAX_LISTED
    return shown + (f' ... and {more} more' if more > 0 else '')


def _check_folder(folder: Any, key: str) -> str:
    folder = str(folder)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{key}: folder "{folder}" does not exist (or is not a folder); fix "{key}" in the '
                                'dataset options or prepare the data as described in datasets/README.md.')
    return folder


def list_images(folder: str) -> List[str]:
    """Sorted image file names (relative, non-recursive, no hidden files) in ``folder``."""
    names = [e.name for e in os.scandir(folder)
             if e.is_file() and not e.name.startswith('.') and e.name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(names)


# ------------------------------------------------------------------------------------------------- meta_info_file
def _read_meta_info(meta_info_file: str, gt_root: Optional[str] = None) -> List[str]:
    # The GT names of a meta_info_file, relative to dataroot_gt (gt_root; None in LMDB mode), in file order. One name
    # per line; BasicSR's extra columns ("name.png (h,w,c) level") are ignored, names may contain spaces. An absolute
    # path inside gt_root is made relative to it ("find $PWD/gt > meta.txt" works); an absolute path elsewhere or a
    # name leaving the folder ("..") is refused: joined with dataroot_lq it would name the target itself.
    if not osp.isfile(meta_info_file):
        raise FileNotFoundError(f'meta_info_file "{meta_info_file}" does not exist; fix "meta_info_file" or remove '
                                'it to list the folder instead.')
    with open(meta_info_file, encoding='utf-8') as f:
        lines = [line.strip() for line in f]
    names = [_META_COLUMNS.sub('', line) for line in lines if line and not line.startswith('#')]
    if not names:
        raise ValueError(f'meta_info_file "{meta_info_file}" lists no images.')
    real_root = osp.realpath(gt_root) if gt_root else None
    relative, outside = [], []
    for name in names:
        rel = name
        if osp.isabs(name):  # inside dataroot_gt: made relative to it; anywhere else the relative path leaves it
            rel = osp.relpath(osp.realpath(name), real_root) if real_root else '..'
        rel = osp.normpath(rel)
        if rel == '..' or rel.startswith('..' + os.sep):
            outside.append(name)
        else:
            relative.append(rel)
    if outside:
        where = f'dataroot_gt "{gt_root}"' if gt_root else 'the LMDB'
        raise ValueError(f'meta_info_file "{meta_info_file}": {len(outside)} line(s) name files outside {where}: '
                         f'{listing(outside)}. List the images relative to dataroot_gt (e.g. "0001.png"): each name '
                         'is looked up in dataroot_gt and in every input folder, so a path outside them would pair '
                         'a target with itself.')
    return relative


# ------------------------------------------------------------------------------------------------------------- LMDB
def _read_lmdb_meta(folder: str, key: str) -> Set[str]:
    # The keys a BasicSR LMDB's meta_info.txt lists; keys listed but missing from the database are found by the image
    # check (check_images), which reads them.
    folder = _check_folder(folder, key)
    meta_file = osp.join(folder, 'meta_info.txt')
    if not osp.isfile(meta_file) or not osp.isfile(osp.join(folder, 'data.mdb')):
        raise FileNotFoundError(f'{key}: "{folder}" is not a BasicSR LMDB (needs data.mdb and meta_info.txt); build '
                                'it with "python datasets/make_lmdb.py <image folder> <name>.lmdb" or use '
                                'io_backend: {type: disk}.')
    with open(meta_file, encoding='utf-8') as f:
        return {osp.splitext(_META_COLUMNS.sub('', line.strip()))[0] for line in f if line.strip()}


# ---------------------------------------------------------------------------------------------------------- pairing
def collect_paths(folders: Dict[str, Any], backend: str, meta_info_file: Optional[str] = None,
                  filename_tmpl: str = '{}') -> List[Dict[str, str]]:
    """List aligned samples over several folders (LMDBs) that hold the same images under the same names.

    The last entry of ``folders`` is the reference (GT). Disk mode pairs by file name: the partner of GT
    ``dir/name.ext`` in every other folder is ``dir/<filename_tmpl.format(name)>.ext``. With ``meta_info_file``
    the GT names come from that file (first column, relative to the GT folder; an absolute path inside it is made
    relative, a name outside it is refused) instead of a folder listing. LMDB mode uses the keys of each database's
    ``meta_info.txt``; paths are then LMDB keys.

    Args:
        folders: ``{key: folder}``, e.g. ``{'lq': ..., 'gt': ...}``; the returned dicts use ``<key>_path``.
        backend: ``'disk'`` or ``'lmdb'``.
        meta_info_file: Optional list of GT names (in LMDB mode it selects keys: names without extension).
        filename_tmpl: Template for the non-GT file names (without extension).

    Returns:
        One ``{'<key>_path': path}`` dict per sample: sorted by GT name, or in ``meta_info_file`` order on disk.

    Raises:
        FileNotFoundError: A folder or the ``meta_info_file`` is missing.
        ValueError: The folders do not match by name, a list names files outside them, or an input folder/file is
            the target's own.
    """
    keys = list(folders)
    gt_key = keys[-1]
    if backend == 'lmdb':
        return _collect_lmdb(folders, meta_info_file)
    roots = {k: _check_folder(v, f'dataroot_{k}') for k, v in folders.items()}
    gt_names = _read_meta_info(meta_info_file, roots[gt_key]) if meta_info_file else list_images(roots[gt_key])
    if not gt_names:
        raise ValueError(f'dataroot_{gt_key}: no images ({", ".join(IMAGE_EXTENSIONS)}) in "{roots[gt_key]}"; check '
                         'the path, or prepare the data as described in datasets/README.md.')
    partners = {}
    for name in gt_names:
        stem, ext = osp.splitext(name)
        partners[name] = osp.join(osp.dirname(stem), filename_tmpl.format(osp.basename(stem)) + ext)
    for key in keys[:-1]:
        if meta_info_file:  # only the listed images matter
            missing, extra = [p for p in partners.values() if not osp.isfile(osp.join(roots[key], p))], []
        else:
            present = set(list_images(roots[key]))
            missing = [p for p in partners.values() if p not in present]
            extra = sorted(present - set(partners.values()))
        if missing or extra:
            msg = f'dataroot_{key} "{roots[key]}" does not match dataroot_{gt_key} "{roots[gt_key]}" by file name'
            if missing:
                msg += f'; {len(missing)} file(s) missing in dataroot_{key}: {listing(missing)}'
            if extra:
                msg += f'; {len(extra)} file(s) without a {gt_key} partner: {listing(extra)}'
            raise ValueError(msg + f'. Each {gt_key} image needs a partner with the same name (filename_tmpl '
                             f'{filename_tmpl!r}).')
    samples = []
    for name in gt_names:
        sample = {f'{k}_path': osp.join(roots[k], partners[name]) for k in keys[:-1]}
        sample[f'{gt_key}_path'] = osp.join(roots[gt_key], name)
        samples.append(sample)
    _check_not_one_file(samples, roots, lmdb=False)
    return samples


def _check_not_one_file(samples: Sequence[Dict[str, str]], folders: Dict[str, Any], lmdb: bool) -> None:
    # An input folder (or LMDB) that is the target's, symbolic links, or a template mapping names onto themselves:
    # each such pair is an image and itself, and the network would learn the identity.
    keys, real = list(folders), {k: osp.realpath(str(v)) for k, v in folders.items()}
    same = [s[f'{keys[-1]}_path'] for s in samples if len(
        {(real[k], s[f'{k}_path']) if lmdb else osp.realpath(s[f'{k}_path']) for k in keys}) < len(keys)]
    if same:
        raise ValueError(f'{len(same)} pair(s) read the same file as input and target (one folder given for two '
                         f'dataroot_* keys, or links?): {listing(same)}; the network would learn the identity. Point '
                         'each input dataroot at its own degraded images.')


def _collect_lmdb(folders: Dict[str, Any], meta_info_file: Optional[str] = None) -> List[Dict[str, str]]:
    keys = list(folders)
    metas = {k: _read_lmdb_meta(str(v), f'dataroot_{k}') for k, v in folders.items()}
    if meta_info_file:  # it selects keys; one missing from a database is found by the image check, which reads it
        metas = dict.fromkeys(keys, {osp.splitext(n)[0].replace(os.sep, '/') for n in _read_meta_info(meta_info_file)})
    gt = metas[keys[-1]]
    for key in keys[:-1]:
        missing, extra = list(gt - metas[key]), list(metas[key] - gt)
        if missing or extra:
            raise ValueError(f'LMDB dataroot_{key} and dataroot_{keys[-1]} hold different keys (missing in {key}: '
                             f'{listing(missing) or "none"}; missing in {keys[-1]}: {listing(extra) or "none"}). '
                             'Build both LMDBs from folders with identical file names.')
    samples = [{f'{k}_path': name for k in keys} for name in sorted(gt)]
    _check_not_one_file(samples, folders, lmdb=True)
    return samples
