"""HTTP routes of the projects service."""

from fastapi import APIRouter

router = APIRouter()
