"""Factories for LangGraph Agent Server's langgraph.json (`checkpointer`, `store`)."""
