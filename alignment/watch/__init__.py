"""Watching the served champion: safety rates, lengths, rewards and prompt drift over a window of
its traces, against its evaluation at promotion; the shadow challenger's online win rate; and
what the watch feeds back (red-team prompts that drew harmful compliance).
"""
