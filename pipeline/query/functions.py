"""The functions an analyst may call in a guarded query (pipeline/query/guard.py checks every call
against :func:`function_allowed`), and the names ClickHouse would read as a function when no column has
them. The list is long, hence its own room; the reasons for what is left out are at its top.
"""

from __future__ import annotations

# The functions an analyst may call. Names compare case-insensitively. Absent on purpose (so
# rejected): everything that reads or reaches outside the tables (file, url, remote*, s3*, hdfs,
# executable, input, joinGet, dictGet*/dictHas and every dictionary function), everything that
# describes the server, its configuration or its users (version, uptime, hostName, fqdn,
# currentUser, currentDatabase, timezone, getSetting, getMacro, shardNum, buildId, tcpPort,
# filesystem*, queryID), sleep and throwIf, and functions that take another function's name as a
# string (arrayReduce, initializeAggregation): every function that runs is named in the statement.
# JSON functions are in: alerts.details is JSON text, and they only read their arguments.


def _words(text: str) -> list[str]:
    return text.split()


_AGGREGATES = frozenset(
    name.lower()
    for name in _words(
        """
    count sum avg min max any anyLast anyHeavy argMin argMax uniq uniqExact uniqCombined
    uniqCombined64 uniqHLL12 uniqUpTo groupArray groupUniqArray groupArrayInsertAt groupArrayMovingSum
    groupArrayMovingAvg groupArraySample groupBitAnd groupBitOr groupBitXor sumWithOverflow sumKahan
    sumMap minMap maxMap avgWeighted topK topKWeighted quantile quantiles quantileExact quantilesExact
    quantileExactWeighted quantilesExactWeighted quantileTiming quantilesTiming quantileTDigest
    quantilesTDigest quantileDeterministic quantilesDeterministic median medianExact medianTiming
    medianTDigest stddevPop stddevSamp varPop varSamp covarPop covarSamp corr skewPop skewSamp kurtPop
    kurtSamp simpleLinearRegression histogram windowFunnel retention entropy countDistinct any_value
    first_value last_value boundingRatio rankCorr deltaSum groupConcat
    """
    )
)
_AGGREGATE_SUFFIXES = tuple(
    s.lower()
    for s in sorted(
        _words("If Array State Merge MergeState SimpleState Distinct OrNull OrDefault ForEach Resample Map"),
        key=len,
        reverse=True,
    )
)
_INT_TYPES = _words("Int8 Int16 Int32 Int64 UInt8 UInt16 UInt32 UInt64 Float32 Float64")
_CONVERSIONS = [
    f"to{t}{sfx}"
    for t in [*_INT_TYPES, "Decimal32", "Decimal64", "Decimal128", "Date", "DateTime", "DateTime64", "UUID"]
    for sfx in ("", "OrZero", "OrNull", "OrDefault")
]
_SCALARS = frozenset(
    name.lower()
    for name in [
        *_CONVERSIONS,
        *_words(
            """
    plus minus multiply divide intDiv intDivOrZero modulo moduloOrZero negate abs gcd lcm
    equals notEquals less greater lessOrEquals greaterOrEquals and or not xor
    if multiIf ifNull nullIf coalesce isNull isNotNull assumeNotNull toNullable greatest least
    exp exp2 exp10 log ln log2 log10 sqrt cbrt pow power sin cos tan asin acos atan atan2 hypot erf erfc
    lgamma tgamma pi e sign floor ceil ceiling round roundBankers roundToExp2 roundDuration roundAge
    roundDown trunc truncate isFinite isInfinite isNaN ifNotFinite
    cast accurateCast accurateCastOrNull toString toFixedString toStringCutToZero toDecimalString
    parseDateTimeBestEffort parseDateTimeBestEffortOrNull parseDateTimeBestEffortOrZero
    parseDateTime32BestEffort parseDateTime32BestEffortOrNull toTypeName toLowCardinality toBool
    toIntervalSecond toIntervalMinute toIntervalHour toIntervalDay toIntervalWeek toIntervalMonth
    toIntervalQuarter toIntervalYear
    now today yesterday localtime localtimestamp current_date current_timestamp curdate
    toYear toQuarter toMonth toDayOfYear toDayOfMonth toDayOfWeek toHour toMinute
    toSecond toUnixTimestamp toStartOfYear toStartOfISOYear toStartOfQuarter toStartOfMonth toMonday
    toStartOfWeek toStartOfDay toStartOfHour toStartOfMinute toStartOfFiveMinute toStartOfFiveMinutes
    toStartOfTenMinutes toStartOfFifteenMinutes toStartOfInterval toTime toRelativeYearNum
    toRelativeQuarterNum toRelativeMonthNum toRelativeWeekNum toRelativeDayNum toRelativeHourNum
    toRelativeMinuteNum toRelativeSecondNum toISOYear toISOWeek toWeek toYearWeek toYYYYMM toYYYYMMDD
    toYYYYMMDDhhmmss toLastDayOfMonth addYears addQuarters addMonths addWeeks addDays addHours
    addMinutes addSeconds subtractYears subtractQuarters subtractMonths subtractWeeks subtractDays
    subtractHours subtractMinutes subtractSeconds dateDiff date_diff dateAdd date_add dateSub date_sub
    timestampAdd timestamp_add timestampSub timestamp_sub dateTrunc date_trunc age timeSlot timeSlots
    formatDateTime toTimeZone toTimezone fromUnixTimestamp makeDate makeDateTime monthName
    length lengthUTF8 char_length character_length empty notEmpty lower upper lcase ucase lowerUTF8
    upperUTF8 reverse reverseUTF8 concat concatWithSeparator substring substr mid substringUTF8
    appendTrailingCharIfAbsent trim trimLeft trimRight trimBoth ltrim rtrim leftPad rightPad lpad rpad
    leftPadUTF8 rightPadUTF8 left right startsWith endsWith position positionCaseInsensitive
    positionUTF8 positionCaseInsensitiveUTF8 locate match like notLike ilike notILike multiSearchAny
    multiSearchFirstIndex multiSearchFirstPosition extract extractAll replaceOne replaceAll replace
    replaceRegexpOne replaceRegexpAll regexpQuoteMeta splitByChar splitByString splitByRegexp
    splitByWhitespace splitByNonAlpha alphaTokens arrayStringConcat repeat toValidUTF8 isValidUTF8
    base64Encode base64Decode tryBase64Decode hex unhex char formatReadableSize formatReadableQuantity
    formatReadableTimeDelta bar countSubstrings countSubstringsCaseInsensitive
    cityHash64 sipHash64 sipHash128 farmHash64 xxHash32 xxHash64 murmurHash2_32 murmurHash2_64
    murmurHash3_32 murmurHash3_64 murmurHash3_128 MD5 SHA1 SHA224 SHA256 halfMD5 intHash32 intHash64
    javaHash crc32
    array arrayConcat arrayElement has hasAll hasAny indexOf countEqual arrayEnumerate
    arrayEnumerateUniq arrayPopBack arrayPopFront arrayPushBack arrayPushFront arrayResize arraySlice
    arraySort arrayReverseSort arrayUniq arrayJoin arrayDistinct arrayIntersect arrayReverse
    arrayFlatten flatten arrayCompact arrayZip arrayMap arrayFilter arrayFill arrayReverseFill
    arraySplit arrayExists arrayAll arrayFirst arrayFirstIndex arrayLast arrayLastIndex arrayMin
    arrayMax arraySum arrayAvg arrayCount arrayCumSum arrayDifference arrayProduct range
    tuple tupleElement map mapKeys mapValues mapContains
    row_number rank dense_rank percent_rank cume_dist ntile lagInFrame leadInFrame nth_value
    transform materialize ignore identity rand rand32 rand64 randCanonical generateUUIDv4
    bitAnd bitOr bitXor bitNot bitShiftLeft bitShiftRight bitCount
    IPv4NumToString IPv4StringToNum IPv6NumToString IPv6StringToNum
    JSONHas JSONLength JSONType JSONExtract JSONExtractUInt JSONExtractInt JSONExtractFloat JSONExtractBool
    JSONExtractString JSONExtractRaw JSONExtractArrayRaw JSONExtractKeys JSONExtractKeysAndValues
    visitParamHas visitParamExtractUInt visitParamExtractInt visitParamExtractFloat visitParamExtractBool
    visitParamExtractRaw visitParamExtractString simpleJSONHas simpleJSONExtractUInt simpleJSONExtractInt
    simpleJSONExtractFloat simpleJSONExtractBool simpleJSONExtractRaw simpleJSONExtractString
    """
        ),
    ]
)
# sleepEachRow is in: a query that waits holds a slot of the query port no longer than one that
# computes (both end at max_execution_time, and the queue is bounded), and it burns no CPU; the
# tests hold the slots with it. `sleep` (per block) stays out: one way to wait is enough.
ALLOWED_FUNCTIONS: frozenset[str] = _AGGREGATES | _SCALARS | {"sleepeachrow"}

# Modern ClickHouse resolves a bare identifier that names no column to one of these functions
# (measured on chdb: `SELECT currentUser` answers the user name). A column by such a name must be
# qualified (t.user), so the server can only read it as a column.
FUNCTIONS_AS_IDENTIFIERS = frozenset(
    name.lower()
    for name in _words(
        """
    currentDatabase current_database currentUser current_user session_user user currentHandler
    currentRequestURL database schema currentSchemas currentProfiles currentRoles enabledRoles
    enabledProfiles defaultRoles defaultProfiles hostName hostname fqdn version uptime timezone
    timeZone serverTimezone serverTimeZone tcpPort serverUUID buildId displayName shardNum shardCount
    queryID initialQueryID query_id initial_query_id getOSKernelVersion
    """
    )
)


def function_allowed(name: str) -> bool:
    """Whether an analyst may call ``name``: an allow-listed function, or an allow-listed
    aggregate with combinators (``countIf``, ``uniqExactState``, ``sumMergeIf``...)."""
    lowered = name.lower()
    if lowered in ALLOWED_FUNCTIONS:
        return True
    stem = lowered
    while True:
        suffix = next((s for s in _AGGREGATE_SUFFIXES if stem.endswith(s) and len(stem) > len(s)), None)
        if suffix is None:
            return False
        stem = stem[: -len(suffix)]
        if stem in _AGGREGATES:
            return True
