"""All of the evidence to ranked conclusions: what is wrong, where, how sure, what to do next.

Modules, in the order the data flows:

* ``engine``    -- runs what the inputs allow (log triage, capture analysis, comparison)
* ``adapt``     -- reads the few facts the rules need from the stages' results
* ``facts``     -- those facts: sessions, captures, hops (and the log triage as it is)
* ``correlate`` -- joins log attempts to captured sessions (remote IP and port, time window,
  Message-ID, the remote's queue id, recipient)
* ``rules``     -- one small function per cause, ranked by evidence level and share of failures
* ``model``     -- the conclusions and the diagnosis record (JSON: ``schemas/diagnose.schema.json``)

Rendering (terminal, JSON, HTML, pcap extract) is ``mailwire.report``'s job.
"""

from mailwire.diagnose.engine import DiagnoseRun, run_diagnosis

__all__ = ["DiagnoseRun", "run_diagnosis"]
