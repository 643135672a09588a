"""What every option check shares: the error and warning types, the unknown-key rule, numbers written as text, and the
lookup of registered types and their arguments.

The component checkers (:mod:`restormer_arch.data.options`, :mod:`restormer_arch.models.model_options`,
:mod:`restormer_arch.models.lr_scheduler`, ...) and the walker (:mod:`restormer_arch.options`) import this module; it
imports nothing of the project, so any of them can import it at the top without a cycle.
"""
import difflib
import importlib.util
import inspect
import re
import warnings
from typing import Any, Callable, Dict, Iterable, List, Optional, Set

# Keys of other projects that mean something else here: the hint names ours.
FOREIGN_KEYS = {
    'use_hflip': 'geometric_augs: true (flips and rotations)', 'use_rot': 'geometric_augs: true (flips and rotations)',
    'use_flip': 'geometric_augs: true (flips and rotations)', 'meta_info': 'meta_info_file',
    'gpu_ids': 'num_gpu', 'n_gpu': 'num_gpu', 'niter': 'total_iter', 'batch_size': 'batch_size_per_gpu',
}
# Registered types that need a package this project does not depend on: (kind, type) -> (module, how to install).
EXTRA_PACKAGES = {
    ('metric', 'calculate_lpips'): ('lpips', "pip install 'restormer-basicsr[lpips]' (or: pip install lpips)"),
}
# A YAML scalar that is a number written as text: quoted, or 3e-4 (YAML 1.1 needs a dot: 3.0e-4).
_NUMBER_TEXT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')
# Keys whose values are names or paths and may legitimately look like numbers.
_TEXT_KEYS = ('name', 'type', 'meta_info_file', 'filename_tmpl', 'suffix', 'project', 'resume_id', 'db_paths',
              'client_keys', 'backend')
# Close-match similarity above which an unknown key is taken for a typo (an error) outside the project's own sections.
_TYPO_CUTOFF = 0.85


class OptionsError(ValueError):
    """An option file is invalid; the message lists every problem found."""


class OptionsWarning(UserWarning):
    """An option is probably unused or unintended (unknown key, odd schedule); training goes on."""


# ----------------------------------------------------------------------------------------------------- known keys
# Dotted names of keys some check recognised during the current validate_options call (see note_known).
_recognised: Set[str] = set()


def reset_recognised() -> None:
    """Forget the keys recorded so far (at the start of a check)."""
    _recognised.clear()


def is_recognised(key: str) -> bool:
    """Whether a check of the current run recorded the dotted key ``key`` as one it knows."""
    return key in _recognised


def note_known(where: str, keys: Iterable[str]) -> None:
    """Record that a check knows these keys of ``where`` (an override may create them)."""
    _recognised.update(f'{where}.{k}' if where else str(k) for k in keys)


def close_matches(name: Any, choices: Iterable[str], cutoff: float = 0.6) -> List[str]:
    # Case-insensitive: 'Adamw' should suggest AdamW first.
    by_lower = {c.lower(): c for c in choices}
    return [by_lower[c] for c in difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=cutoff)]


def unknown_choice(kind: str, name: Any, choices: Iterable[str], where: str) -> str:
    choices = sorted(choices)
    close = close_matches(name, choices)
    hint = f'did you mean {", ".join(close)}?' if close else f'known {kind}s: {", ".join(choices)}.'
    return f'{where}: unknown {kind} {name!r}; {hint}'


def check_keys(section: Any, known: Iterable[str], where: str, problems: List[str],
               also_known: Optional[Callable[[str], bool]] = None, strict: bool = False) -> List[str]:
    """Report misspelled keys of ``section`` (errors) and other unknown keys (warnings).

    Args:
        section: The mapping to look at (anything else is ignored).
        known: The keys the section's reader knows.
        where: Dotted name of the section (``''`` for the top level).
        problems: Errors are appended here.
        also_known: Further keys that are fine (e.g. any ``*_opt`` loss).
        strict: The section belongs to this project: any close match is taken for a typo. Otherwise only a very
            close one is, since BasicSR or another plugin may read keys this project does not know.

    Returns:
        The keys suggested in place of misspelled ones (so "missing" is not reported twice).
    """
    if not isinstance(section, dict):
        return []
    known = list(known)
    note_known(where, known)
    suggested = []
    for key in section:
        if key in known or (also_known is not None and also_known(str(key))):
            note_known(where, [key])
            continue
        name = f'{where}.{key}' if where else str(key)
        if key in FOREIGN_KEYS and strict:
            problems.append(f'{name}: not an option of this project; use {FOREIGN_KEYS[key]}.')
            continue
        absent = [k for k in known if k not in section]
        close = close_matches(key, absent, 0.6 if strict else _TYPO_CUTOFF)
        if close:
            suggested.append(close[0])
            problems.append(f'{name}: unknown option; did you mean {close[0]}? (BasicSR ignores unknown keys, so the '
                            'default would be used silently.)')
            continue
        close = close_matches(key, absent)
        hint = f'did you mean {close[0]}?' if close else f'known here: {", ".join(sorted(known))}.'
        warnings.warn(f'{name}: unknown option, not read by this project (BasicSR or another plugin may read it); '
                      f'{hint}', OptionsWarning, stacklevel=3)
    return suggested


def check_numbers(value: Any, where: str, problems: List[str]) -> None:
    """Report numbers written as text: quoted ('128') or an exponent without a dot (3e-4), which YAML reads as str."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _TEXT_KEYS and not str(key).startswith('dataroot'):
                check_numbers(item, f'{where}.{key}' if where else str(key), problems)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_numbers(item, f'{where}[{i}]', problems)
    elif isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        if 'e' in value.lower() and '.' not in value:
            hint = (f'YAML reads {value} as text because it has no decimal point; write {value.replace("e", ".0e", 1)}'
                    f' or !!float {value}')
        else:
            hint = 'remove the quotes'
        problems.append(f'{where}: {value!r} is text, not a number; {hint}.')


def registries() -> Dict[str, Any]:
    # Importing this module ran restormer_arch/__init__, so the plugin's classes are registered already.
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

    return {'arch': ARCH_REGISTRY, 'dataset': DATASET_REGISTRY, 'loss': LOSS_REGISTRY, 'metric': METRIC_REGISTRY,
            'model': MODEL_REGISTRY}


def lookup(kind: str, name: Any) -> Optional[Any]:
    """The registered class/function, with BasicSR's fallback to ``<name>_basicsr`` (its renamed duplicates)."""
    registry = registries()[kind]
    for candidate in (name, f'{name}_basicsr'):
        if isinstance(candidate, str) and candidate in registry:
            return registry.get(candidate)
    return None


def check_type(kind: str, name: Any, where: str, problems: List[str]) -> Optional[Any]:
    if name is None:
        problems.append(f'{where}: missing "type".')
        return None
    found = lookup(kind, name)
    if found is None:
        problems.append(unknown_choice(f'{kind} type', name, registries()[kind].keys(), where))
        return None
    package = EXTRA_PACKAGES.get((kind, name))
    if package and importlib.util.find_spec(package[0]) is None:
        problems.append(f'{where}: {name} needs the {package[0]} package, which is not installed; {package[1]}.')
    return found


def check_arguments(target: Any, kwargs: Dict[str, Any], where: str, label: str, problems: List[str],
                     leading: int = 0, partial: bool = False) -> None:
    """Bind ``kwargs`` to ``target``'s signature (after ``leading`` positional arguments the caller passes)."""
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return  # a builtin without a signature: nothing to compare with
    params = [p for p in list(signature.parameters)[leading:] if p not in ('args', 'kwargs')]
    note_known(where, params)
    bind = signature.bind_partial if partial else signature.bind
    try:
        bind(*[None] * leading, **kwargs)
    except TypeError as err:
        unknown = [k for k in kwargs if k not in signature.parameters]
        detail = '; '.join(unknown_choice('argument', k, params, f'{where}.{k}') for k in unknown) or str(err)
        problems.append(f'{where} ({label}): {detail}')

