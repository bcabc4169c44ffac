"""The native backend stack as data and the process manager that runs it.

``components`` holds one record per component (ports by role, process marker, health
probes, command and environment, address text, group); ``processes`` starts, stops and
probes them; ``cli`` is what ``scripts/stack.sh`` hands its runtime commands to. Standard
library only: the stack starts before the project's virtual environment exists.
"""
