"""Agent frameworks' tool calls put behind an answerable service.

Each module here wraps one framework's tools so that calling a tool submits an intent to
``answerable serve`` instead of running the tool's body in the agent's process: the service
records it, asks its rules, waits for a reviewer where they say so and runs the operation once.
The framework's own human-in-the-loop step (an approval interruption, an ``interrupt()``) only
pauses the agent; the approval that lets anything run is the reviewer's, signed and bound to the
intent's exact arguments.

* :mod:`answerable.integrations.openai_agents`: the OpenAI Agents SDK.
* :mod:`answerable.integrations.langgraph`: a LangGraph tool node.

The frameworks are imported only by their own module (``pip install 'answerable[integrations]'``).
"""
