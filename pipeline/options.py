"""One place for each option: a config dataclass's field carries its default and its `--help`
text (`option(...)`), and the command line builds its options from the fields
(vrestore/cli_options.py, config_options), so a default or a help text is never written twice.
"""
from dataclasses import MISSING, field


def option(default=MISSING, help: str = "", *, factory=None, choices=None, show_default=True, path=None, metavar=None, parse=None,
           flag=None, bare=None, short=None):
    """A dataclass field that is also a command-line option `--field-name` (or `flag`, e.g.
    "--format" for a field named image_format). choices: the allowed values; path: click.Path
    keyword arguments (e.g. exists=True); show_default: True, False, or the words --help shows
    instead of the value; parse: turns the option's text into the field's value (a ValueError
    is the option's one-line error); bare: the value of the option given without one (`--resume`
    alone means `--resume require`); short: a one-letter alias ("-n")."""
    meta = {"help": help, "choices": choices, "show_default": show_default, "path": path, "metavar": metavar, "parse": parse,
            "flag": flag, "bare": bare, "short": short}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def width_by_height(text):
    """`320x240` -> (320, 240); None (not given) stays None."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"expected WxH, for example 320x240, not {text!r}") from None
    return (w, h)


def comma_names(text):
    """`Cat,Hubble` -> ("Cat", "Hubble"); None (not given) stays None."""
    if text is None or isinstance(text, tuple):
        return text
    return tuple(s.strip() for s in str(text).split(",") if s.strip()) or None


def comma_ints(text) -> tuple:
    """`1,1,1,2` -> (1, 1, 1, 2): a count per level, as an option's text."""
    if isinstance(text, tuple):
        return text
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise ValueError(f"expected counts like 1,1,1,2, not {text!r}") from None
