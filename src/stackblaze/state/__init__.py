"""stackblaze.state"""
