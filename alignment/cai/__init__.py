"""Constitutional AI: generation, the SL critique/revision phase, the AI-feedback judge, review.

``generate``  batched chat generation with the KV cache (one or several processes)
``critique``  SL phase: answer, critique and revise by sampled principles; SFT + audit data
``feedback``  RL phase: the one-forward-pass (A)/(B) judge and AI-labelled preference pairs
``review``    human review of a sample of AI labels: agreement rate and flips as new data
"""
