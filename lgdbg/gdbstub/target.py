"""The target description gdb reads with qXfer:features:read:target.xml.

i386 core + SSE (the 308-byte g packet), osabi none: without it gdb assumes
GNU/Linux once an ELF is loaded and asks for an orig_eax register.  The two
features are inline (no xi:include), so one qXfer answers everything.
"""

_FLAGS = ("CF 0", "1", "PF 2", "AF 4", "ZF 6", "SF 7", "TF 8", "IF 9", "DF 10", "OF 11",
          "NT 14", "RF 16", "VM 17", "AC 18", "VIF 19", "VIP 20", "ID 21")
_MXCSR = ("IE DE ZE OE UE PE DAZ IM DM ZM OM UM PM FZ").split()


def _eflags():
    fields = ['<field name="" start="22" end="31"/>']
    for item in _FLAGS:
        parts = item.split()
        name, bit = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
        fields.append('<field name="%s" start="%s" end="%s"/>' % (name, bit, bit))
    return '<flags id="i386_eflags" size="4">%s</flags>' % "".join(fields)


def _mxcsr():
    return '<flags id="i386_mxcsr" size="4">%s</flags>' % "".join(
        '<field name="%s" start="%d" end="%d"/>' % (n, i, i) for i, n in enumerate(_MXCSR))


def _core():
    regs = []
    for n in ("eax", "ecx", "edx", "ebx"):
        regs.append('<reg name="%s" bitsize="32" type="int32" regnum="%d"/>' % (n, len(regs)))
    regs.append('<reg name="esp" bitsize="32" type="data_ptr" regnum="4"/>')
    regs.append('<reg name="ebp" bitsize="32" type="data_ptr" regnum="5"/>')
    regs.append('<reg name="esi" bitsize="32" type="int32" regnum="6"/>')
    regs.append('<reg name="edi" bitsize="32" type="int32" regnum="7"/>')
    regs.append('<reg name="eip" bitsize="32" type="code_ptr" regnum="8"/>')
    regs.append('<reg name="eflags" bitsize="32" type="i386_eflags" regnum="9"/>')
    for i, n in enumerate(("cs", "ss", "ds", "es", "fs", "gs")):
        regs.append('<reg name="%s" bitsize="32" type="int32" regnum="%d"/>' % (n, 10 + i))
    for i in range(8):
        regs.append('<reg name="st%d" bitsize="80" type="i387_ext" regnum="%d"/>' % (i, 16 + i))
    for i, n in enumerate(("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")):
        regs.append('<reg name="%s" bitsize="32" type="int" group="float" regnum="%d"/>'
                    % (n, 24 + i))
    return '<feature name="org.gnu.gdb.i386.core">%s%s</feature>' % (_eflags(), "".join(regs))


def _sse():
    types = ('<vector id="v4f" type="ieee_single" count="4"/>'
             '<vector id="v2d" type="ieee_double" count="2"/>'
             '<vector id="v16i8" type="int8" count="16"/>'
             '<vector id="v8i16" type="int16" count="8"/>'
             '<vector id="v4i32" type="int32" count="4"/>'
             '<vector id="v2i64" type="int64" count="2"/>'
             '<union id="vec128"><field name="v4_float" type="v4f"/>'
             '<field name="v2_double" type="v2d"/><field name="v16_int8" type="v16i8"/>'
             '<field name="v8_int16" type="v8i16"/><field name="v4_int32" type="v4i32"/>'
             '<field name="v2_int64" type="v2i64"/><field name="uint128" type="uint128"/>'
             '</union>')
    regs = "".join('<reg name="xmm%d" bitsize="128" type="vec128" regnum="%d"/>' % (i, 32 + i)
                   for i in range(8))
    regs += '<reg name="mxcsr" bitsize="32" type="i386_mxcsr" group="vector" regnum="40"/>'
    return '<feature name="org.gnu.gdb.i386.sse">%s%s%s</feature>' % (types, _mxcsr(), regs)


TARGET_XML = ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd">'
              '<target version="1.0"><architecture>i386</architecture>'
              '<osabi>none</osabi>%s%s</target>' % (_core(), _sse())).encode()

ANNEXES = {b"target.xml": TARGET_XML}


def xfer(annex, offset, length):
    """qXfer read: 'm' + chunk while more follows, 'l' + the last chunk."""
    doc = ANNEXES.get(annex)
    if doc is None:
        return None
    chunk = doc[offset:offset + length]
    return (b"l" if offset + length >= len(doc) else b"m") + chunk
