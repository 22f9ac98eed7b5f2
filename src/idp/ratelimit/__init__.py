"""Rate limits and SMS abuse limits: counters in Redis when IDP_REDIS_URL is set, else memory."""

from idp.ratelimit.errors import RateLimited, SmsBudgetExceeded
from idp.ratelimit.limiter import RateLimiter
from idp.ratelimit.rules import DEFAULT_RULES
from idp.ratelimit.sms import BreakerTrip, SmsGuard, ip_key, log_breaker_trip
from idp.ratelimit.storage import FailoverStorage

__all__ = ["DEFAULT_RULES", "BreakerTrip", "FailoverStorage", "RateLimited", "RateLimiter",
           "SmsBudgetExceeded", "SmsGuard", "ip_key", "log_breaker_trip"]
