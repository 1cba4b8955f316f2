"""`pgalert dispatch`, split by job: loop.py runs the threads (listen, claim, record) over a connector
(connector.py); channels.py knows the providers, pacing.py what a claimed batch may send now, sending.py hands
requests to the HTTP loop and judges replies, recorder.py writes results, health.py runs the probes, and
outcomes.py holds the pure decisions about one delivery."""

from dispatcher.worker.loop import Dispatcher
from dispatcher.worker.outcomes import build_request, decide, result_row

__all__ = ["Dispatcher", "build_request", "decide", "result_row"]
