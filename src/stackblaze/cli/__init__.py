"""stackblaze.cli"""
