from fastapi import APIRouter

from idp.api.http import ApiRoute

router = APIRouter(route_class=ApiRoute)
