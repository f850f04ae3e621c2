"""The help formatter of every command: each option shows its real default, once.

argparse's ArgumentDefaultsHelpFormatter appends "(default: None)" to every option whose flag
is unset so that a config field's default applies, and a second "(default ...)" to a help text
that already names one. Here an option whose destination is a `RunConfig` field shows that
field's default (60 epochs, lr 0.001, ...: the paper's protocol), an option that says its own
default shows nothing more, and None or False show nothing.
"""

from __future__ import annotations

import argparse
import dataclasses


def run_config_defaults() -> dict[str, object]:
    from edgetrain.train.config import RunConfig

    return {
        f.name: f.default
        for f in dataclasses.fields(RunConfig)
        if f.default is not dataclasses.MISSING
    }


class DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's parser default, or else the RunConfig field's default it stands for."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default is argparse.SUPPRESS:
            return text
        default = action.default
        if default is None:
            default = run_config_defaults().get(action.dest)
        if default is None or default is False or isinstance(action, argparse._HelpAction):
            return text
        return f"{text} (default: {default})" if text else f"(default: {default})"
