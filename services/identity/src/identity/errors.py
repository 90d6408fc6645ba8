"""Refusals of the identity service."""

from shared.errors import ErrorSpec

USERNAME_TAKEN = ErrorSpec("username_taken", 409, "该用户名已被使用", "This username is already taken")
INVALID_CREDENTIALS = ErrorSpec("invalid_credentials", 401, "用户名或密码错误", "Wrong username or password")
