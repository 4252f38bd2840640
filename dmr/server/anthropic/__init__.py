"""Anthropic's Messages API (`/v1/messages`, `count_tokens`): wire models, routes and the event renderer."""
