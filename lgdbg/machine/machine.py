"""The emulated lguest machine: CPU + Guest memory + Host + Launcher + clock.

Machine.run() is the Host's run_guest() loop (§7.1), with one difference the
debugger needs: it can also come back because of a breakpoint, a watchpoint, a
stop request or an instruction limit.  Those are *not* Host entries: resuming
after them goes straight back to the Guest, so attaching a debugger never
changes what the Guest sees (run-contract.md, "Host entries").

A Host entry happens after every Guest exit (hypercall, trap, in/out) and at
every timed event: the clock event's expiry, a scheduled irq raise, a Host
tick.  At each one the Host drains the async ring, runs the synchronous
hypercall, serves the Launcher and tries to deliver an interrupt.
"""

import time
from contextlib import contextmanager

from unicorn import UcError

from .. import abi
from ..errors import UsageError
from ..image import Image, load_image
from .clock import RealtimeClock, VirtualClock
from .console_input import ConsoleInput
from .cpu import Cpu
from .events import EventBus
from .host import Host
from .host_3_2 import Host32
from .launcher import Launcher
from .launcher_3_2 import Launcher32
from .memory import GuestMemory
from . import switcher
from .page_tables import PageTables
from .watchdog import Watchdog

# x86 instruction prefixes (operand and address size, rep, lock, segments).
_PREFIXES = frozenset((0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65))

DEFAULT_MEM_MIB = 32
DEFAULT_HOST_TICK = 1_000_000
# Longest run between looks at stop requests when nothing else bounds it.
MAX_SLICE_INSNS = 5_000_000
# The same page fault reflected this many times in a row: the Guest is stuck.
STUCK_FAULTS = 10_000
# The same fault filled this many times in a row: the fill does not take.
STUCK_FILLS = 1_000
# The realtime clock's stand-in for the Host's own timer preemption.
REALTIME_TICK_S = 0.010


class Stop:
    """Why Machine.run() returned."""
    __slots__ = ("kind", "addr", "watch", "reason")

    # kinds: breakpoint, watch, interrupted, step, killed, poweroff, restart, max-insns,
    # halted-forever, stuck; the debugger adds catch and history-begin (reverse.py).
    def __init__(self, kind, addr=None, watch=None, reason=None):
        self.kind, self.addr, self.watch, self.reason = kind, addr, watch, reason

    def __repr__(self):
        return "<Stop %s%s>" % (self.kind, "" if self.reason is None else " " + self.reason)


class Machine:
    def __init__(self, image, mem_mib=DEFAULT_MEM_MIB, cmdline="", clock="icount",
                 host_tick=DEFAULT_HOST_TICK, irqs=(), max_insns=None, output=None,
                 initrd=None, console_input=None, abi_profile=None, disk=None,
                 disk_readonly=False):
        if clock not in ("icount", "realtime"):
            raise UsageError("--clock must be icount or realtime, not %r" % clock)
        if clock == "realtime" and (irqs or max_insns is not None or host_tick != DEFAULT_HOST_TICK):
            raise UsageError("--irq, --max-insns and --host-tick count instructions: "
                             "they need --clock icount")
        if not 1 <= mem_mib <= 1024:
            raise UsageError("--mem must be between 1 and 1024 MiB, not %d" % mem_mib)
        if host_tick <= 0:
            raise UsageError("--host-tick must be a positive instruction count")
        mem_size = mem_mib << 20
        self.image = image if isinstance(image, Image) else \
            load_image(image, mem_size, abi_profile)
        if abi_profile is not None and self.image.profile != abi_profile:
            raise UsageError("--abi %s does not fit %s: it is a %s guest"
                             % (abi_profile, self.image.path, self.image.profile))
        self.profile = self.image.profile
        if disk is not None and self.profile != "3.2":
            raise UsageError("--disk needs a guest of the 3.2 ABI (virtio block); "
                             "%s is a %s guest" % (self.image.path, self.profile))
        if self.image.page_offset + mem_size + abi.PAGE_SIZE > abi.SWITCHER_ADDR:
            # RAM and the device page must fit below the Switcher's 4 MiB.
            raise UsageError("--mem %d MiB does not fit between page_offset %#x and the "
                             "Switcher at %#x" % (mem_mib, self.image.page_offset,
                                                  abi.SWITCHER_ADDR))
        self.events = EventBus()
        self.clock = VirtualClock() if clock == "icount" else RealtimeClock()
        if initrd and len(initrd) > mem_size // 2:
            raise UsageError("--initrd of %d bytes does not fit in --mem %d MiB"
                             % (len(initrd), mem_mib))
        if console_input is None:
            console_input = ConsoleInput()
        if self.profile == "3.2":
            from .virtio import Devices
            devices = Devices(mem_size, console_input, disk=disk, disk_readonly=disk_readonly)
            self.launcher = Launcher32(mem_size, cmdline, initrd=initrd,
                                       console_input=console_input, devices=devices)
        else:
            self.launcher = Launcher(mem_size, cmdline, initrd=initrd,
                                     console_input=console_input)
        self.cpu = Cpu(self.image.page_offset, self.launcher.top)
        self.mem = GuestMemory(self.cpu, self.launcher.top, self._kill)
        self.launcher.load(self.cpu.ram, self.image)
        self.launcher.mem = self.mem
        self.launcher.output = output
        self.pt = PageTables(self.cpu, self.mem, self._kill, self.image.page_offset,
                             self.launcher.pfn_limit, self.cpu.switcher_ptes(), self.profile)
        self.cpu.attach_shadows(self.pt)
        if self.profile == "3.2":
            # No tables yet: virtual == physical until NEW_PGTABLE.
            self.pt.init_guest_pagetable_linear()
            host_class = Host32
        else:
            # The Launcher's tables are the Guest's first cr3 (H:500); from
            # here on the CPU sees memory only through the shadows.
            self.pt.init_guest_pagetable(self.launcher.pgdir)
            host_class = Host
        self.host = host_class(self.cpu, self.mem, self.clock, self.emit, self.launcher, self.pt)
        self.launcher.host = self.host
        self.launcher.attach()
        self.mem.write_observers.append(self._host_wrote)

        self.host_tick = host_tick
        self.max_insns = max_insns
        self.schedule = sorted((count, irq) for irq, count in irqs)
        for irq, count in irqs:
            check_irq(irq)
        self._sync_hcall = None          # a hypercall waiting for the Host
        self._entry_pending = False      # a Guest exit the Host has not handled
        # Stop requests and deadlines both live in the watchdog.
        self._watchdog = Watchdog(self.cpu.stop)
        self._host_watch_hit = None
        self._resume_from_bp = None
        self.debug_write_observers = []  # callables(addr, length): a debugger wrote memory
        # A Host entry whose delivery attempt is still to come (reverse
        # execution stops between the two), and where the last delivery was.
        self.delivery_held = False
        self.last_delivery_icount = None
        self._recording = None           # replay: list collecting (icount, Stop)
        self._last_tick_ns = 0           # virtual time of the last Host tick
        self.same_fault = (None, 0)      # (eip, cr2, errcode) reflected, times in a row
        self.same_fill = (None, 0)       # ... filled silently by the Host, times in a row
        self.last_cr2 = 0                # CR2 as the last page fault the Host saw left it
        self.tsc_reads = 0               # rdtsc answered from the virtual clock

        # The Host's setup_regs: CS 0x61, DS/ES/SS 0x69, EFLAGS 0x202,
        # EIP = the entry after the magic, ESI = 0 (the boot header), ESP 0.
        self.cpu.enter_guest(self.image.entry, 0, abi.INITIAL_EFLAGS)
        for seg in ("ds", "es"):
            self.cpu.set_reg(seg, abi.KERNEL_DS)

    # --- events -------------------------------------------------------------------
    def emit(self, kind, **fields):
        event = self.clock.stamp()
        event["kind"] = kind
        event.update(fields)
        self.events.emit(event)

    def subscribe(self, callback):
        return self.events.subscribe(callback)

    def _kill(self, reason):
        self.host.kill_guest(reason)

    # --- the run loop -------------------------------------------------------------------
    @property
    def icount(self):
        return self.clock.icount

    @property
    def dead(self):
        return self.host.dead

    def request_stop(self):
        """Stop a running Guest soon (any thread; Ctrl-C).

        A request made while nothing runs stops the next run at once.
        """
        self._watchdog.request_stop()

    def _stopped_on_request(self):
        self._watchdog.clear_stop()
        return Stop("interrupted")

    def run(self, max_insns=None, hold_delivery=False):
        """Run until something a debugger or the CLI must hear about.

        hold_delivery: when max_insns is reached on a Host entry, stop after
        its hypercalls but before its delivery attempt (reverse execution's
        "just before the interrupt"); the next run() makes that attempt first.
        """
        limit = None if max_insns is None else self.clock.icount + max_insns
        while True:
            at_limit = limit is not None and self.clock.icount >= limit
            if self.host.dead:
                return self._death()
            if self.delivery_held and not (hold_delivery and at_limit):
                self.delivery_held = False
                self._deliver()
            if self._entry_pending:
                self._entry_pending = False
                hold = hold_delivery and at_limit
                self.host_entry(deliver=not hold)
                self.delivery_held = hold and not self.host.dead
                if self.host.dead:
                    return self._death()
                if self._host_watch_hit:
                    hit, self._host_watch_hit = self._host_watch_hit, None
                    stop = Stop("watch", watch=hit)
                    if self._recording is None:
                        return stop
                    self._recording.append((self.clock.icount, stop))
            if self.stuck:
                return self._stuck()
            if self._watchdog.stop_requested:
                return self._stopped_on_request()
            if limit is not None and self.clock.icount >= limit:
                return Stop("step")
            if self.max_insns is not None and self.clock.icount >= self.max_insns:
                return Stop("max-insns")
            if self.host.halted:
                if self._console_input():
                    continue
                if not self._idle():
                    return Stop("halted-forever",
                                reason="halted with nothing that can ever wake it")
                continue
            self._return_to_guest()
            if self.host.dead:
                continue
            stop = self._run_guest(limit)
            if stop is not None:
                if self._recording is None:
                    return stop
                self._recording.append((self.clock.icount, stop))

    def _run_guest(self, limit):
        """Step (9)-(10) of run_guest: run until an exit, then classify it."""
        # Resuming from a breakpoint must not hit it again, but only while
        # EIP is still on it (a delivered interrupt may have moved it).
        skip = self._resume_from_bp if self._resume_from_bp == self.cpu.reg("eip") else None
        self._resume_from_bp = None
        self.mem.flush_code()
        # run_guest: "if (lg->ts) set_ts()" before every entry into the Guest.
        self.cpu.set_ts(self.host.ts)
        if self.clock.deterministic:
            budget = self._budget(limit)
            self._watchdog.arm()
            try:
                ex, retired = self.cpu.run_counted(budget, skip_bp=skip)
            finally:
                self._watchdog.disarm()
            self.clock.icount += retired
        else:
            slice_s = REALTIME_TICK_S
            if self.clock.deadline_ns is not None:
                slice_s = min(slice_s, (self.clock.deadline_ns - self.clock.time_ns) / 1e9)
            self._watchdog.arm(time.monotonic() + max(slice_s, 0))
            try:
                ex, _ = self.cpu.run(None, skip_bp=skip, count_for_watch=bool(self.cpu.watches()))
            finally:
                self._watchdog.disarm()
            if ex.kind == "stop" and not self._watchdog.stop_requested:
                self._entry_pending = True        # the realtime Host tick
        kind = ex.kind
        if kind == "breakpoint":
            self._resume_from_bp = ex.eip
            return Stop("breakpoint", addr=ex.eip)
        if kind == "watch":
            return Stop("watch", watch=ex.watch)
        if kind == "intr" and ex.intno == 14 and not ex.soft:
            if not ex.fetch and self._string_io_at(ex.eip):
                # The CPU checks the I/O permission before touching memory: an
                # ins/outs whose operand is unmapped is a #GP(0), not a #PF.
                self.host.handle_trap(13, 0, ex.eip)
                self._entry_pending = True
                self._timed_events()
                return None
            errcode = self.cpu.last_error_code()
            if self.pt.tracking_fault(ex.addr, errcode):
                # Only the snapshot code's write tracking faulted: not a Host
                # entry, nothing the Guest, the trace or a register may show.
                self.cpu.set_cr2(self.last_cr2)
                self._resume_from_bp = skip   # the instruction is still to run
                return None
            self.last_cr2 = ex.addr
            if self._page_fault(ex.addr, errcode):
                # Filled silently: the same instruction runs again, and a
                # breakpoint on it was already reported for this execution
                # (the CPU's RF flag does this for a fault's retry).
                self._resume_from_bp = skip
            self._entry_pending = True
        elif kind == "intr":
            self._interrupt(ex)
        elif kind == "mem" and not ex.fetch and self._string_io_at(ex.eip):
            # The CPU checks the I/O permission before touching memory: an
            # ins/outs whose operand is unmapped is a #GP(0), not a #PF.
            self.host.handle_trap(13, 0, ex.eip)
            self._entry_pending = True
        elif kind == "mem":
            # Only a jump to emu_start's `until` gets here: unicorn stopped
            # before fetching, where the CPU would have faulted.
            errcode = (2 if ex.write else 0) | (4 if self.cpu.cpl == 3 else 0)
            self._page_fault(ex.addr, errcode)
            self._entry_pending = True
        elif kind == "io":
            self._io(ex)
            self._entry_pending = True
            if ex.watch:
                self._host_watch_hit = ex.watch
        self._timed_events()
        return None

    def _interrupt(self, ex):
        """An interrupt or exception meets the IDT the Host built (copy_traps).

        unicorn hands every vector to a hook instead of an IDT, so the CPU's
        part is done here: the gate's DPL check for software interrupts, then
        either the CPU's own delivery into the Guest (a direct trap: not a
        Host entry at all) or an exit to the Host.
        """
        vector, host = ex.intno, self.host
        if vector == 13 and not ex.soft and self._virtual_tsc():
            return
        if ex.soft and self.cpu.cpl > host.gate_dpl(vector):
            # `int n`, int3 or into through a gate whose DPL is below CPL:
            # #GP with error code n*8+2 (IDT, external 0), and the int does
            # not retire.  Every default gate has DPL 0 (the hypercall's 1).
            at = ex.eip - self._soft_int_length(ex.eip, vector)
            if self.clock.deterministic:
                self.clock.icount -= 1
            self.cpu.set_reg("eip", at)
            host.handle_trap(13, vector * 8 + 2, at)
        elif host.direct_trap(vector):
            # Software interrupts never push an error code; faults do.
            errcode = None
            if vector in abi.TRAPS_WITH_ERRCODE and not ex.soft:
                errcode = self.cpu.last_error_code()
            host.deliver_direct(vector, errcode, ex.eip)
            return
        elif vector == abi.LGUEST_TRAP_ENTRY and ex.soft:
            r = self.cpu.regs()
            # The call and its arguments, in this ABI's registers.
            self._sync_hcall = tuple(r[n] for n in host.profile.hcall_regs) + (ex.eip - 2,)
            host.errcode = 0                  # the Switcher's stub pushes 0
        else:
            errcode = self.cpu.last_error_code() if vector in abi.TRAPS_WITH_ERRCODE else 0
            host.handle_trap(vector, errcode, self.cpu.reg("eip"))
        self._entry_pending = True

    def _virtual_tsc(self):
        """rdtsc / rdtscp under CR4.TSD: answer with virtual time, 1 GHz.

        A machine property, not a Host decision: the real Host lets rdtsc
        run, and the Guest reads the CPU's TSC.  Here the TSC counts virtual
        nanoseconds (one per instruction under --clock icount), so every run
        of the same image and schedule reads the same values; the 3.2
        kernel feeds rdtsc into get_random_int (stack and mmap
        randomization), which made its runs differ.  Not a Host entry: no
        event, no delivery attempt, the instruction simply retires.
        Returns False for any other #GP.
        """
        eip = self.cpu.reg("eip")
        try:
            code = self.cpu.read_virt(eip, 3)
        except UcError:
            return False
        if code[:2] == b"\x0f\x31":
            length = 2
        elif code == b"\x0f\x01\xf9":
            length = 3
            self.cpu.set_reg("ecx", 0)              # IA32_TSC_AUX: CPU 0
        else:
            return False
        if self.cpu.last_error_code() != 0:
            return False
        tsc = self.clock.time_ns
        self.cpu.set_reg("eax", tsc & 0xFFFFFFFF)
        self.cpu.set_reg("edx", tsc >> 32 & 0xFFFFFFFF)
        self.cpu.set_reg("eip", (eip + length) & 0xFFFFFFFF)
        if self.clock.deterministic:
            self.clock.icount += 1                  # it retires
        self.tsc_reads += 1
        return True

    def _soft_int_length(self, eip_after, vector):
        # `int $n` is CD n; int3 (CC) and into (CE) are one byte.
        try:
            last = self.cpu.read_virt(eip_after - 1, 1)[0]
        except UcError:
            return 2
        return 1 if (vector, last) in ((3, 0xCC), (4, 0xCE)) else 2

    def _return_to_guest(self):
        """switch_to_guest (switcher.S) reloads every segment register.

        The Switcher pops GS, FS, DS, ES and irets into CS and SS at every
        return, so a LOAD_GDT or LOAD_TLS reaches the selectors already
        loaded, and a selector whose descriptor became invalid faults in the
        Switcher ("unhandled trap 256").  Reloading changes nothing while the
        GDT is unchanged (the CPU checked each selector when it was loaded),
        so we only do it after the Host changed the GDT.
        """
        host = self.host
        if not host.gdt_changed:
            return
        host.gdt_changed = False
        regs = self.cpu.regs()
        loaded = switcher.switch_to_guest(self.cpu.gdt, regs)
        try:
            if loaded is not None:
                for name in ("cs", "ss", "gs", "fs", "ds", "es"):
                    self.cpu.set_reg(name, loaded[name])
        except UcError:
            loaded = None       # unicorn's own descriptor check: never a crash
        if loaded is None:
            host.switcher_fault(regs["eip"])

    def _string_io_at(self, eip):
        """Is the instruction at eip an ins or outs (after any prefixes)?"""
        try:
            code = self.cpu.read_virt(eip, 15)
        except UcError:         # not mapped: no instruction to look at
            return False
        for byte in code:
            if byte not in _PREFIXES:
                return byte in (0x6C, 0x6D, 0x6E, 0x6F)
        return False

    def _budget(self, limit):
        """Instructions until the next thing that needs the Host or the caller."""
        now = self.clock.icount
        ends = [now + MAX_SLICE_INSNS, now + self.clock.insns_until(self._next_tick_ns())]
        if self.clock.deadline_ns is not None:
            ends.append(now + self.clock.insns_until(self.clock.deadline_ns))
        if self.schedule:
            ends.append(self.schedule[0][0])
        if limit is not None:
            ends.append(limit)
        if self.max_insns is not None:
            ends.append(self.max_insns)
        return max(min(ends) - now, 0)

    def _next_tick_ns(self):
        return (self.clock.time_ns // self.host_tick + 1) * self.host_tick

    def _timed_events(self):
        """Whatever fell due at this instruction boundary becomes a Host entry."""
        clock = self.clock
        if clock.deadline_ns is not None and clock.time_ns >= clock.deadline_ns:
            clock.deadline_ns = None
            self.emit("clock", fired=True)
            self._raise(0, "clock")
        if clock.deterministic:
            # All raises scheduled for this count, before the one delivery attempt.
            while self.schedule and self.schedule[0][0] <= clock.icount:
                _, irq = self.schedule.pop(0)
                self._raise(irq, "schedule")
            if clock.time_ns >= self._last_tick_ns + self.host_tick:
                self._last_tick_ns = clock.time_ns - clock.time_ns % self.host_tick
                self._entry_pending = True

    def _raise(self, irq, source):
        self.host.irqs_pending |= 1 << irq
        self.emit("raise", irq=irq, source=source)
        self._entry_pending = True

    def _console_input(self):
        """Idle in HALT with nothing pending: the moment the Guest waits for
        console input, so the moment the Launcher hands it some."""
        host = self.host
        if host.lguest_data is None:
            return False
        blocked = self.mem.read_u32(host.lguest_data + abi.LD_BLOCKED)
        if host.irqs_pending & ~blocked:
            return False
        if self.launcher.feed_console():
            self._entry_pending = True
            return True
        if self.clock.deadline_ns is None and not self.schedule and self.launcher.input.live:
            # Nothing else can wake the Guest: wait for the user to type.
            while not self.launcher.input.wait(0.1):
                if self._watchdog.stop_requested:
                    return True           # the loop's top stops the run
            return self._console_input()
        return False

    def _idle(self):
        """Halted: let virtual time jump to the next event that could wake us."""
        if self.schedule and self.clock.deterministic:
            # icount does not move while halted: the next raise is due now.
            count = self.schedule[0][0]
            while self.schedule and self.schedule[0][0] == count:
                self._raise(self.schedule.pop(0)[1], "schedule")
            return True
        if self.clock.deadline_ns is None:
            return False
        if self.clock.deterministic:
            self.clock.skip_to(self.clock.deadline_ns)
        else:
            delay = (self.clock.deadline_ns - self.clock.time_ns) / 1e9
            if delay > 0 and self._watchdog.wait_for_stop(delay):
                return True
        self._timed_events()
        return True

    # --- Host entries ---------------------------------------------------------------------
    def host_entry(self, deliver=True):
        """Steps (1)-(5) of run_guest: hypercalls, the Launcher, an interrupt."""
        sync, self._sync_hcall = self._sync_hcall, None
        for _ in range(abi.LHCALL_RING_SIZE + 2):
            if self.host.do_hypercalls(sync):
                sync = None
            if self.host.dead:
                return
            # Back to the Launcher with a DMA (2.6.23) or a NOTIFY (3.2);
            # it calls read() again, and the Host carries on.
            if not self.launcher.serve(self.host):
                break
            if self.host.dead:
                return
        if deliver:
            self._deliver()

    def _deliver(self):
        decision = self.host.maybe_do_interrupt()
        if decision.delivered is not None:
            self.last_delivery_icount = self.clock.icount
        return decision

    @contextmanager
    def quiet(self, record_stops=None):
        """Replay the past without saying anything twice.

        Events are muted; breakpoints and watchpoints are ignored, or, with
        record_stops (a list), noted as (icount, Stop) without stopping.
        """
        self.events.muted += 1
        self.cpu.stops_ignored = record_stops is None
        self._recording = record_stops
        output, self.launcher.output = self.launcher.output, None
        try:
            yield
        finally:
            self.events.muted -= 1
            self.cpu.stops_ignored = False
            self._recording = None
            self.launcher.output = output

    def _page_fault(self, cr2, errcode):
        eip = self.cpu.reg("eip")
        key = (eip, cr2, errcode)
        if self.host.handle_trap(14, errcode, eip, cr2=cr2):
            # Filled from the Guest's tables: the access now succeeds, so the
            # same fault at once again means the fill did not take (a broken
            # shadow): the Guest would spin without retiring an instruction.
            # (Counted only while no instruction retires in between: a Guest
            # that drops a mapping and touches it again makes progress.)
            self.same_fault = (None, 0)
            last, times = self.same_fill
            here = key + (self.clock.icount,)
            self.same_fill = (here, times + 1 if here == last else 1)
            return True
        self.same_fill = (None, 0)
        # The same fault reflected again and again, nothing else between:
        # the real Host would spin for ever; a debugger says so (status 4).
        last, times = self.same_fault
        self.same_fault = (key, times + 1 if key == last else 1)
        return False

    @property
    def stuck(self):
        return self.same_fault[1] >= STUCK_FAULTS or self.same_fill[1] >= STUCK_FILLS

    def _stuck(self):
        reflected = self.same_fault[1] >= STUCK_FAULTS
        (eip, cr2, errcode), times = self.same_fault if reflected else \
            (self.same_fill[0][:3], self.same_fill[1])
        self.same_fault = self.same_fill = (None, 0)
        return Stop("stuck", addr=eip, reason=(
            "stuck: the same page fault (eip %#x, cr2 %#x, error code %#x) %s %d times in "
            "a row" % (eip, cr2, errcode, "reflected" if reflected
                       else "filled by the Host without the access completing", times)))

    def _io(self, ex):
        """An in/out/ins/outs: at IOPL 0 the CPU refuses it with #GP(0).

        unicorn skips the I/O permission check and has already run the
        instruction (one iteration of a rep) when its hook tells us, so put
        back what it changed (EIP, and ESI/EDI/ECX for the string forms) and
        let the Host see the #GP(0) the CPU would have raised: run_guest's
        case 13 tries emulate_insn first.  One thing cannot be put back: for
        `ins`, unicorn stores to ES:EDI before the hook runs, so that one
        element keeps what it stored.
        """
        for name, value in ex.undo.items():
            self.cpu.set_reg(name, value)
        self.cpu.set_reg("eip", ex.eip)
        if self.clock.deterministic:
            self.clock.icount -= 1          # a faulting instruction does not retire
        self.host.handle_trap(13, 0, ex.eip)

    @property
    def powered_off(self):
        """Dead by the Guest's own power-off, not killed."""
        return self.host.dead == "CRASH: Power down"

    @property
    def restarting(self):
        """3.2: the Guest asked for a restart (SHUTDOWN with RESTART)."""
        return getattr(self.host, "restart", False)

    def _death(self):
        if self.restarting:
            return Stop("restart", reason=self.host.dead)
        if self.powered_off:
            return Stop("poweroff", reason=self.host.dead)
        return Stop("killed", reason=self.host.dead)

    # --- what debuggers do ------------------------------------------------------------------
    def step(self):
        """Execute one instruction (a hypercall is handled as part of it)."""
        return self.run(max_insns=1)

    def release_held_delivery(self):
        """Make the delivery attempt a reverse step stopped before; True if one was held."""
        if not self.delivery_held:
            return False
        self.delivery_held = False
        self._deliver()
        return True

    def try_deliver(self):
        """One delivery attempt, as lguest-step-irq asks.

        Returns (irq delivered or None, the Host's InterruptDecision): the
        record maybe_do_interrupt carried out, verdict and steps included.
        """
        decision = self._deliver()
        return decision.delivered, decision

    def raise_irq(self, irq, source="monitor"):
        check_irq(irq)
        self.host.irqs_pending |= 1 << irq
        self.emit("raise", irq=irq, source=source)
        if self.host.halted:
            # A halted Guest sleeps in the Host until something wakes it: the
            # Launcher's LHREQ_BREAK after raising an irq is that wake-up, so
            # the next run() begins with a Host entry (and a delivery attempt).
            self._entry_pending = True

    def clear_irq(self, irq):
        check_irq(irq)
        self.host.irqs_pending &= ~(1 << irq)

    def read_memory(self, addr, length):
        return self.cpu.read_virt(addr, length)

    def write_memory(self, addr, data):
        """A debugger's write, by virtual address as the Guest maps it now.

        Observers hear each physical piece in the kernel's linear map
        (PAGE_OFFSET + physical), as GuestMemory's write observers do.
        """
        for phys, n in self.cpu.write_virt(addr, data):
            for observe in self.debug_write_observers:
                observe(self.image.page_offset + phys, n)

    def add_watch(self, addr, length, kind):
        self.cpu.add_watch(addr, length, kind)

    def remove_watch(self, addr, length, kind):
        return self.cpu.remove_watch(addr, length, kind)

    def _host_wrote(self, virt, length):
        """The Guest's watchpoints also watch what the Host writes.

        Matched by physical address, as the CPU's hooks are: the Host (and the
        3.2 Launcher's devices) write guest-physical memory, which the Guest
        may see at another virtual address than PAGE_OFFSET + physical (a
        user mapping, a vring ioremapped into vmalloc space).  The address
        reported is the watched one the first written byte has.
        """
        phys = virt - self.image.page_offset
        for kind, vaddr, wphys, n in self.cpu.watch_pieces():
            if kind != "rwatch" and phys < wphys + n and wphys < phys + length:
                if self._host_watch_hit is None:
                    self._host_watch_hit = (kind, vaddr + max(wphys, phys) - wphys)


def check_irq(irq):
    """The one range check for every way of raising or clearing an irq."""
    if not 0 <= irq < abi.LGUEST_IRQS:
        raise UsageError("irq %d out of range (0-%d)" % (irq, abi.LGUEST_IRQS - 1))
