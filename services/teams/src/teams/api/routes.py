"""HTTP routes of the teams service."""

from fastapi import APIRouter

router = APIRouter()
