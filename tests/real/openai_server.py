# A real OpenAI-compatible server for abatch's tests: LitServe (from PyPI) with its OpenAISpec,
# on CPU, on 127.0.0.1:PORT (argv[1]), serving /v1/chat/completions (health: /health).
# The "model" downloads nothing and is deterministic: the reply is the text of the last user
# message, upper-cased (tests/real/check_openai_batch.py expects exactly that).
# Usage: python openai_server.py PORT
import os
import signal
import sys

import litserve as ls
from litserve.specs.openai import OpenAISpec


def last_user_text(messages):
    """The text of the last user message (string content, or its text parts joined)."""
    for message in reversed(messages):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, str):
            return content
        if content is None:
            return ""
        return "".join(part.text for part in content if getattr(part, "type", None) == "text")
    return ""


class UpperCaseModel(ls.LitAPI):
    def setup(self, device):
        pass

    def predict(self, request):
        # OpenAISpec hands over the parsed ChatCompletionRequest; the spec wants a generator.
        yield last_user_text(request.messages).upper()


def stop_on_sigterm():
    # LitServe shuts its worker processes down on Ctrl+C only: on a plain SIGTERM the main process
    # would die alone and leave them listening. Make SIGTERM to the main process act as Ctrl+C.
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() == main_pid:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)  # a forked worker that inherited this handler
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    port = int(sys.argv[1])
    stop_on_sigterm()
    server = ls.LitServer(UpperCaseModel(spec=OpenAISpec()), accelerator="cpu", workers_per_device=1)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")
