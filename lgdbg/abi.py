"""The lguest Host/Guest ABI as data: Linux 2.6.23, the 2.6.24 deltas, and 3.2.

Two profiles of the ABI exist for the Host: "2.6.23" (the GenuineLguest
boot, lguest_bus DMA) and "3.2" (the boot protocol's hardware_subarch, the
later hypercall numbers, virtio on lguest's device page).  Module-level
names without a suffix are the 2.6.23 ones; PROFILES holds what differs.

Everything that both the emulated Host and the decoders (CLI trace, REPL, gdb
commands) need to agree on lives here, once.  This module is imported inside
gdb's embedded Python, so it must stay standard-library only.

Facts come from shared/docs/lguest-abi.md; section numbers in the comments
refer to that sheet.
"""

import struct
from collections import namedtuple

# --- §1 Quick constants ---------------------------------------------------
LGUEST_TRAP_ENTRY = 0x1F          # int $0x1f is a hypercall
LHCALL_RING_SIZE = 64
LGUEST_IRQS = 32
FIRST_EXTERNAL_VECTOR = 0x20      # virtual irq N arrives at vector 0x20 + N
SYSCALL_VECTOR = 0x80
GUEST_PL = 1

KERNEL_CS = 0x60 | GUEST_PL       # 0x61: what the Guest's kernel code runs with
KERNEL_DS = 0x68 | GUEST_PL       # 0x69
USER_CS = 0x73
USER_DS = 0x7B

GDT_ENTRIES = 32
GDT_ENTRY_TLS_MIN = 6
GDT_ENTRY_LGUEST_CS = 10          # Host-owned entries, never taken from the Guest
GDT_ENTRY_LGUEST_DS = 11
GDT_ENTRY_TSS = 16
GDT_ENTRY_DOUBLEFAULT_TSS = 31
HOST_GDT_ENTRIES = (GDT_ENTRY_LGUEST_CS, GDT_ENTRY_LGUEST_DS,
                    GDT_ENTRY_TSS, GDT_ENTRY_DOUBLEFAULT_TSS)

X86_EFLAGS_IF = 0x200
SWITCHER_ADDR = 0xFFC00000
RESERVE_MEM = 4 * 1024 * 1024
DEFAULT_PAGE_OFFSET = 0xC0000000
INITIAL_EFLAGS = 0x202
LG_CLOCK_MIN_DELTA = 100          # ns
PAGE_SIZE = 4096
COMMAND_LINE_SIZE = 2048
MAGIC = b"GenuineLguest"
LGUEST_CONSOLE_DMA_KEY = 0

# Boot header (Linux zero page) offsets, §4.1 step 4.
BOOT_E820_NR = 0x1E8
BOOT_E820_MAP = 0x2D0
BOOT_CMD_LINE_PTR = 0x228
BOOT_GUEST_TYPE = 0x23C
BOOT_CMDLINE_ADDR = 0x1000
BOOT_TYPE_OF_LOADER = 0x210       # the Launcher says 0xFF ("unknown") with an initrd
BOOT_RAMDISK_IMAGE = 0x218
BOOT_RAMDISK_SIZE = 0x21C
LGUEST_MAX_DMA = 32               # BIND_DMA slots per Guest

# --- §3 Hypercalls ---------------------------------------------------------
HCALL_NAMES = {
    0: "FLUSH_ASYNC",
    1: "LGUEST_INIT",
    2: "CRASH",
    3: "LOAD_GDT",
    4: "NEW_PGTABLE",
    5: "FLUSH_TLB",
    6: "LOAD_IDT_ENTRY",
    7: "SET_STACK",
    8: "TS",
    9: "SET_CLOCKEVENT",
    10: "HALT",
    12: "BIND_DMA",
    13: "SEND_DMA",
    14: "SET_PTE",
    15: "SET_PMD",
    16: "LOAD_TLS",
    17: "NOTIFY",          # 2.6.24's console; accepted alongside the 2.6.23 set
}
HCALL_NUMBERS = {name: nr for nr, name in HCALL_NAMES.items()}
# Linux 3.2 (arch/x86/include/asm/lguest_hcall.h): LOAD_GDT (3), BIND_DMA
# (12) and SEND_DMA (13) are gone, CRASH became SHUTDOWN, SET_PMD moved to 15
# as SET_PGD (13 is PAE's SET_PMD), and NOTIFY, LOAD_GDT_ENTRY and
# SEND_INTERRUPTS are new.
HCALL_NAMES_3_2 = {nr: name for nr, name in HCALL_NAMES.items() if nr not in (2, 3, 12, 13, 15)}
HCALL_NAMES_3_2.update({2: "SHUTDOWN", 13: "SET_PMD", 15: "SET_PGD", 18: "LOAD_GDT_ENTRY",
                        19: "SEND_INTERRUPTS"})
LGUEST_SHUTDOWN_POWEROFF = 1
LGUEST_SHUTDOWN_RESTART = 2

globals().update({"LHCALL_" + name: nr for nr, name in HCALL_NAMES.items()})

# What each argument means, for decoders (EDX, EBX, ECX).
HCALL_ARGS = {
    "LGUEST_INIT": ("lguest_data",),
    "CRASH": ("msg",),
    "LOAD_GDT": ("gdt", "entries"),
    "NEW_PGTABLE": ("pgdir",),
    "FLUSH_TLB": ("all",),
    "LOAD_IDT_ENTRY": ("vector", "lo", "hi"),
    "SET_STACK": ("ss", "esp", "pages"),
    "TS": ("ts",),
    "SET_CLOCKEVENT": ("delta_ns",),
    "BIND_DMA": ("key", "dmas", "count_irq"),
    "SEND_DMA": ("key", "dma"),
    "SET_PTE": ("pgdir", "vaddr", "pte"),
    "SET_PMD": ("pgdir", "index"),
    "LOAD_TLS": ("tls", "cpu"),
    "NOTIFY": ("addr",),
    # 3.2 (EBX, ECX, EDX, ESI)
    "SHUTDOWN": ("msg", "reason"),
    "SET_PGD": ("pgdir", "index"),
    "LOAD_GDT_ENTRY": ("index", "lo", "hi"),
}


def hcall_names(profile=None):
    """{number: name} of one profile's hypercalls (None: 2.6.23's)."""
    return HCALL_NAMES if profile is None else PROFILES[profile].hcall_names


def hcall_name(nr, profile=None):
    return hcall_names(profile).get(nr, "BAD(%d)" % nr)


def describe_hcall(nr, args, profile=None):
    """One line naming a call and its meaningful arguments: 'SET_STACK ss=0x69 esp=...'."""
    name = hcall_name(nr, profile)
    names = HCALL_ARGS.get(name, ())
    parts = ["%s=%#x" % (n, v) for n, v in zip(names, args)]
    return " ".join([name] + parts)


# Traps that push an error code (§7.4), and the vectors LOAD_IDT_ENTRY ignores (§8.1).
TRAPS_WITH_ERRCODE = frozenset((8, 10, 11, 12, 13, 14, 17))
IDT_IGNORED_VECTORS = frozenset((2, 8, 15, LGUEST_TRAP_ENTRY))
# Vectors the 2.6.23 Host may let the CPU deliver directly (§7.4): never these.
NEVER_DIRECT_TRAPS = frozenset((7, 13, 14, LGUEST_TRAP_ENTRY))

TRAP_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD",
    7: "#NM", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP",
    14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM",
}

# --- §2 struct lguest_data --------------------------------------------------
Field = namedtuple("Field", "name offset size")

LAYOUTS = {
    "2.6.23": {
        "size": 1128,
        "ring_order": ("eax", "edx", "ebx", "ecx"),   # memory order of one hcall slot
        "fields": (
            Field("irq_enabled", 0, 4),
            Field("blocked_interrupts", 4, 4),
            Field("cr2", 8, 4),
            Field("time", 12, 8),
            Field("hcall_status", 20, 64),
            Field("hcalls", 84, 1024),
            Field("reserve_mem", 1108, 4),
            Field("guestid", 1112, 2),
            Field("tsc_khz", 1116, 4),
            Field("noirq_start", 1120, 4),
            Field("noirq_end", 1124, 4),
        ),
    },
    "2.6.24": {
        "size": 1136,
        "ring_order": ("eax", "ebx", "ecx", "edx"),
        "fields": (
            Field("irq_enabled", 0, 4),
            Field("blocked_interrupts", 4, 4),
            Field("cr2", 8, 4),
            Field("time", 12, 8),
            Field("hcall_status", 20, 64),
            Field("hcalls", 84, 1024),
            Field("reserve_mem", 1108, 4),
            Field("tsc_khz", 1112, 4),
            Field("pgdir", 1116, 4),
            Field("noirq_start", 1120, 4),
            Field("noirq_end", 1124, 4),
            Field("kernel_address", 1128, 4),
            Field("syscall_vec", 1132, 4),
        ),
    },
    # include/linux/lguest.h of 3.2, offsets checked against the vmlinux DWARF.
    "3.2": {
        "size": 1392,
        "ring_order": ("eax", "ebx", "ecx", "edx", "esi"),
        "fields": (
            Field("irq_enabled", 0, 4),
            Field("blocked_interrupts", 4, 4),
            Field("cr2", 8, 4),
            Field("time", 12, 8),
            Field("irq_pending", 20, 4),
            Field("hcall_status", 24, 64),
            Field("hcalls", 88, 1280),
            Field("reserve_mem", 1368, 4),
            Field("tsc_khz", 1372, 4),
            Field("noirq_start", 1376, 4),
            Field("noirq_end", 1380, 4),
            Field("kernel_address", 1384, 4),
            Field("syscall_vec", 1388, 4),
        ),
    },
}
DEFAULT_LAYOUT = "2.6.23"


def layout(version=DEFAULT_LAYOUT):
    try:
        return LAYOUTS[version]
    except KeyError:
        raise ValueError("unknown lguest_data layout %r (known: %s)"
                         % (version, ", ".join(sorted(LAYOUTS))))


def offset_of(name, version=DEFAULT_LAYOUT):
    for f in layout(version)["fields"]:
        if f.name == name:
            return f.offset
    raise KeyError(name)


# Offsets the Host uses every entry, taken from the 2.6.23 table.
LD_IRQ_ENABLED = offset_of("irq_enabled")
LD_BLOCKED = offset_of("blocked_interrupts")
LD_CR2 = offset_of("cr2")
LD_TIME = offset_of("time")
LD_HCALL_STATUS = offset_of("hcall_status")
LD_HCALLS = offset_of("hcalls")
LD_RESERVE_MEM = offset_of("reserve_mem")
LD_GUESTID = offset_of("guestid")
LD_TSC_KHZ = offset_of("tsc_khz")
LD_NOIRQ_START = offset_of("noirq_start")
LD_NOIRQ_END = offset_of("noirq_end")
LD_SIZE = layout()["size"]
HCALL_SLOT = 16
HCALL_DONE = 0xFF


def decode_lguest_data(raw, version=DEFAULT_LAYOUT):
    """Decode the bytes of a struct lguest_data into a dict of plain values.

    Scalars become ints; `time` becomes (sec, nsec); `hcall_status` a list of
    64 bytes; `hcalls` a list of 64 (call, arg1, arg2, ...) tuples in the
    Host's argument order whatever the memory order: (EDX, EBX, ECX) for
    2.6.23, (EBX, ECX, EDX, ESI) for the later layouts.
    """
    lay = layout(version)
    if len(raw) < lay["size"]:
        raise ValueError("lguest_data needs %d bytes, got %d" % (lay["size"], len(raw)))
    out = {}
    for f in lay["fields"]:
        chunk = raw[f.offset:f.offset + f.size]
        if f.name == "time":
            out["time"] = struct.unpack("<II", chunk)
        elif f.name == "hcall_status":
            out["hcall_status"] = list(chunk)
        elif f.name == "hcalls":
            order = lay["ring_order"]
            args = ("edx", "ebx", "ecx") if len(order) == 4 else order[1:]
            size = 4 * len(order)
            slots = []
            for i in range(LHCALL_RING_SIZE):
                words = dict(zip(order, struct.unpack_from("<%dI" % len(order), chunk, i * size)))
                slots.append((words["eax"],) + tuple(words[r] for r in args))
            out["hcalls"] = slots
        elif f.size == 2:
            out[f.name] = struct.unpack("<H", chunk)[0]
        else:
            out[f.name] = struct.unpack("<I", chunk)[0]
    return out


def irq_list(bitmap):
    """The irq numbers set in a 32-bit bitmap, lowest first."""
    return [i for i in range(LGUEST_IRQS) if bitmap >> i & 1]


# --- §8.1 Gates -------------------------------------------------------------
GATE_INTERRUPT = 0xE
GATE_TRAP = 0xF
GATE_KINDS = {GATE_INTERRUPT: "interrupt", GATE_TRAP: "trap"}

Gate = namedtuple("Gate", "handler selector present dpl type")


def decode_gate(lo, hi):
    return Gate(handler=(lo & 0xFFFF) | (hi & 0xFFFF0000),
                selector=lo >> 16,
                present=bool(hi & 0x8000),
                dpl=(hi >> 13) & 3,
                type=(hi >> 8) & 0xF)


def gate_kind(gate_type):
    return GATE_KINDS.get(gate_type, "type %#x" % gate_type)


# --- Segment descriptors (LOAD_GDT fix-ups, §3.2 / §8.2) -------------------
Descriptor = namedtuple("Descriptor", "base limit dpl type present s db g")


def decode_descriptor(lo, hi):
    base = (lo >> 16) | ((hi & 0xFF) << 16) | (hi & 0xFF000000)
    limit = (lo & 0xFFFF) | (hi & 0x000F0000)
    g = bool(hi & 0x00800000)
    if g:
        limit = (limit << 12) | 0xFFF
    return Descriptor(base=base, limit=limit, dpl=(hi >> 13) & 3,
                      type=(hi >> 8) & 0xF, present=bool(hi & 0x8000),
                      s=bool(hi & 0x1000), db=bool(hi & 0x00400000), g=g)


# --- §9 struct lguest_dma (2.6.23 console) ----------------------------------
LGUEST_MAX_DMA_SECTIONS = 16
DMA_USED_LEN = 0
DMA_ADDR = 4
DMA_LEN = 4 + 4 * LGUEST_MAX_DMA_SECTIONS       # 68
DMA_SIZE = DMA_LEN + 2 * LGUEST_MAX_DMA_SECTIONS  # 100

# --- §7.2 reasons a virtual interrupt is not delivered -----------------------
DEFER_REASONS = ("blocked", "noirq", "disabled", "no-handler")


# --- the two profiles -----------------------------------------------------------
class Profile(namedtuple("Profile", "name hcall_names layout hcall_regs idt_entries "
                                    "reserve_mem")):
    """What a Host of one kernel version needs as data.

    hcall_regs: the registers of a synchronous hypercall, number first (the
    2.6.23 Host reads EAX, EDX, EBX, ECX; 3.2's struct hcall_args maps onto
    EAX, EBX, ECX, EDX, ESI).  idt_entries: the size of the Host's copy of
    the Guest's IDT (2.6.23 keeps 64, 3.2 all 256).
    """

    @property
    def hcall_numbers(self):
        return {name: nr for nr, name in self.hcall_names.items()}

    def offset(self, field):
        return offset_of(field, self.layout)

    @property
    def ld_size(self):
        return layout(self.layout)["size"]

    @property
    def ring_slot(self):
        return 4 * len(layout(self.layout)["ring_order"])


PROFILES = {
    "2.6.23": Profile("2.6.23", HCALL_NAMES, "2.6.23", ("eax", "edx", "ebx", "ecx"), 64,
                      RESERVE_MEM),
    "3.2": Profile("3.2", HCALL_NAMES_3_2, "3.2", ("eax", "ebx", "ecx", "edx", "esi"), 256,
                   RESERVE_MEM),
}
DEFAULT_PROFILE = "2.6.23"
# The profile whose hypercall numbers go with a built-in lguest_data layout:
# 2.6.24 kept 2.6.23's numbers (and added NOTIFY, which HCALL_NAMES has).
LAYOUT_PROFILES = {"2.6.23": "2.6.23", "2.6.24": "2.6.23", "3.2": "3.2"}


def profile(name):
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError("unknown lguest ABI %r (known: %s)" % (name, ", ".join(sorted(PROFILES))))


# The 3.2 boot protocol (arch/x86/include/asm/bootparam.h), zero page offsets.
BOOT_VERSION = 0x206
BOOT_LOADFLAGS = 0x211
BOOT_KERNEL_ALIGNMENT = 0x230
BOOT_HARDWARE_SUBARCH = 0x23C       # the same field 2.6.23 called the Guest type
KEEP_SEGMENTS = 0x40
X86_SUBARCH_LGUEST = 1
