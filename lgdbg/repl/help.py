"""help, quit and completion."""

import re

from .. import abi
from .session import CommandError, COMMANDS, ALIASES, SUBCOMMANDS, ADDRESS_COMMANDS, REG_NAMES, REG_ALIASES, resolve_command


class HelpCommands:
    """Mixed into repl.commands.Commands."""

    def cmd_help(self, args):
        """help [CMD]: list the commands, or say what one does."""
        if args:
            name = resolve_command(args.split()[0])
            doc = getattr(self, "cmd_" + name.replace("-", "_")).__doc__ or name
            lines = [line.strip() for line in doc.strip().splitlines()]
            aliases = sorted(a for a, n in ALIASES.items() if n == name and "-" not in a)
            if aliases:
                lines.append("aliases: " + ", ".join(aliases))
            self.say("\n".join(lines))
            return
        out = ["Commands (help CMD for more; unique prefixes work):"]
        for name in COMMANDS:
            doc = getattr(self, "cmd_" + name.replace("-", "_")).__doc__ or name
            first = doc.strip().splitlines()[0]
            usage, _, what = first.partition(": ")
            if len(usage) > 26:
                out.append("  %s\n  %-26s %s" % (usage, "", what))
            else:
                out.append("  %-26s %s" % (usage, what))
        out.append("Addresses: 0xNUMBER, SYMBOL, SYMBOL+OFFSET, $REGISTER, *ADDR.  "
                   "Ctrl-C stops a running guest; Ctrl-D quits.")
        self.say("\n".join(out))

    def cmd_quit(self, args):
        """quit: leave the REPL (Ctrl-D does too)."""
        self.quit_requested = True

    # ------------------------------------------------------------------ completion
    @staticmethod
    def completion_prefix(text_before_cursor):
        """The part of the line that a completion replaces."""
        text = text_before_cursor.lstrip()
        if not re.search(r"[\s/]", text):
            return text
        return re.split(r"\s", text)[-1].lstrip("*&")

    def completions(self, text_before_cursor):
        """Words that complete the last word of the line (commands, subcommands, symbols)."""
        text = text_before_cursor.lstrip()
        if not re.search(r"[\s/]", text):
            names = sorted(set(COMMANDS) | {a for a in ALIASES if "-" not in a and len(a) > 2})
            return [n for n in names if n.startswith(text)]
        word = re.split(r"[\s/]", text, 1)[0]
        try:
            name = resolve_command(word)
        except CommandError:
            return []
        last = re.split(r"\s", text)[-1]
        prefix = last.lstrip("*&")
        words = text.split()
        first_arg = len(words) == 1 or (len(words) == 2 and not text[-1].isspace())
        out = []
        if name in SUBCOMMANDS and first_arg:
            out += [s for s in SUBCOMMANDS[name] if s.startswith(prefix)]
        if name == "help" and first_arg:
            out += [c for c in COMMANDS if c.startswith(prefix)]
        if name == "catch" and len(words) >= 2 and words[1] == "hcall":
            names = abi.hcall_names(getattr(self.m, "profile", None)).values()
            out += [n for n in sorted(names) if n.startswith(prefix.upper())]
        if name in ADDRESS_COMMANDS and not prefix.startswith("/"):
            if prefix.startswith("$"):
                out += sorted("$" + r for r in REG_NAMES + tuple(REG_ALIASES)
                              if r.startswith(prefix[1:]))
            elif self.symbols is not None and prefix:
                out += [s for s in self.symbols.names() if s.startswith(prefix)]
            elif self.symbols is not None and name != "data":
                out += [s for s in self.symbols.names()]
        return out
