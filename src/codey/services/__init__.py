"""The three jobs (generation, chat, completion), independent of model and dialect."""
