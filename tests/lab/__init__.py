"""The fault lab: real Postfix, real captures, injected faults, ground truth (see README.md here).

Modules: ``netns`` (four namespaces in a line), ``receiver`` (the controllable MX), ``postfix``
(a private Postfix in the sender namespace), ``delay`` (NFQUEUE delay beyond the edge),
``capture`` (tcpdump), ``scenarios`` (what each scenario injects and expects), ``runner`` (one
scenario end to end), ``truth`` (truth.json), ``plugin`` (the ``lab_run`` fixture) and
``__main__`` (``python -m tests.lab run …`` by hand).
"""
