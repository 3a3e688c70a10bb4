"""Qt-free logic of the MSK Priors module, and the pieces both modules share.

Shared here: the headless application context, volume-node helpers and PACS access.
"""
