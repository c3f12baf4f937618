"""stackblaze.engine.kubernetes"""
