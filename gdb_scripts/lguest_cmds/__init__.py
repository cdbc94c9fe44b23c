"""lgdbg's gdb commands, one module per area (as Linux's scripts/gdb does).

    data       lguest-data, lguest-noirq        (memory and symbols only)
    patches    lguest-patches                   (memory and symbols only)
    journey    lguest-journey                   (line tables and sources)
    irq        lguest-irq, lguest-step-irq      (the Host, through lgdbg's stub)
    host       lguest-hcalls, lguest-idt, lguest-host, lguest-status
    catch      lguest-catch
    pgtable    lguest-pgtable                   (the Guest's tables and the Host's shadows)
    virtio     lguest-virtio                    (3.2: the device page and the rings)
    loading    lguest-load-addresses (pre-hook of load and compare-sections)
    functions  $lguest_irq_enabled(), $lguest_in_noirq(), $lguest_pending()
"""

import gdb

_registered = False


def register_all():
    global _registered
    if _registered:
        return
    from . import (catch, data, functions, host, irq, journey, loading, overview, patches,
                   pgtable, virtio)
    for module in (data, irq, host, catch, pgtable, virtio, patches, journey, loading):
        module.register()
    functions.register()
    overview.register()          # last: its help lists all the others
    _registered = True
