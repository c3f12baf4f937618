"""stackblaze.engine.local"""
