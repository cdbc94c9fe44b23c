"""Hover text: the details of one mark or span, from the event fields that
trace.py keeps for it (its `info`), addresses named through `name`."""

from .. import abi


def describe(track_name, info, name):
    """Details for a mark of track `track_name` ('hcall', 'defer-noirq', ...)."""
    return _DETAILS.get(track_name.split("-")[0], _no_detail)(info, name)


def _group(n):
    return "{:,}".format(n)


def _no_detail(info, name):
    return ""


def _hcall_detail(info, name):
    nr, args, eip, is_async, profile = info
    ok = isinstance(nr, int) and isinstance(args, list) and all(isinstance(a, int) for a in args)
    text = abi.describe_hcall(nr, args, profile) if ok else "nr %s" % nr
    if eip is not None:
        text += " from " + name(eip)
    return text + (" (async ring)" if is_async else "")


def _deliver_detail(info, name):
    vector, from_eip, handler, gate, esp = info
    parts = ["vector %#x" % vector if vector is not None else "",
             "interrupted %s" % name(from_eip) if from_eip is not None else "",
             "handler %#x" % handler if handler is not None else "",
             "%s gate" % gate, "esp %#x" % esp if esp is not None else ""]
    return ", ".join(p for p in parts if p)


def _defer_detail(info, name):
    eip, length = info
    return "at %s, for %s" % (name(eip) if eip is not None else "?", _group(length))


def _trap_detail(info, name):
    vector, errcode, eip, cr2, delivered, emulated, direct = info
    parts = ["error code %#x" % errcode if errcode is not None else "",
             "eip %s" % name(eip) if eip is not None else "",
             "cr2 %#x" % cr2 if cr2 is not None else "",
             "emulated by the Host" if emulated else
             # A direct trap (trap gate, vector below 32 or 0x80) never
             # reaches the real Host: the CPU delivers it through the Guest's
             # own gate, with the CPU's IF in the pushed eflags.
             "delivered directly by the CPU through the guest's trap gate" if direct else
             ("reflected to the guest" if delivered else "not delivered")]
    return ", ".join(p for p in parts if p)


def _halt_detail(info, name):
    t0, t1 = info
    return "virtual time %s to %s ns" % (_group(t0), "?" if t1 is None else _group(t1))


def _clock_detail(info, name):
    if isinstance(info, tuple):
        t, deadline = info
        return "at %s ns, deadline %s ns" % (_group(t), _group(deadline))
    return "virtual time %s ns" % _group(info) if isinstance(info, int) else ""


def _text_detail(info, name):
    return repr(info) if isinstance(info, str) else ""


def _iret_detail(info, name):
    eip, irq = info
    who = "irq %d's handler" % irq if irq is not None else "a handler"
    return "%s returning (eip %s)" % (who, name(eip))


_DETAILS = {"hcall": _hcall_detail, "deliver": _deliver_detail, "defer": _defer_detail,
            "trap": _trap_detail, "demand": _trap_detail, "halt": _halt_detail, "clock": _clock_detail,
            "console": _text_detail, "raise": _no_detail, "kill": _text_detail,
            "poweroff": _no_detail, "iret": _iret_detail}
