"""The long-term store's items (LangGraph's `BaseStore`): native readers and writers per
backend, and copying, checking and repairing items between two stores."""
