-- What a patient's chart shows of each observation, one narrow row per observation, written
-- with the observation's other index entries (and removed with them). A patient followed for
-- years has thousands of observations scattered over the record table; the chart reads these
-- rows from one range of one index instead, in the same time whatever the hospital's size.
CREATE TABLE chart_result (
    resource_id    uuid PRIMARY KEY REFERENCES resource (id),
    patient_id     uuid NOT NULL,
    facility_id    uuid NOT NULL,
    code           text NOT NULL,
    display        text NOT NULL,
    value          double precision,
    unit           text NOT NULL,
    effective_at   timestamptz,
    flag           text NOT NULL,
    vital          boolean NOT NULL
);
CREATE INDEX chart_result_patient ON chart_result (patient_id, effective_at DESC);

-- The observations already stored, read the way kiorex-fhir reads them (the first coding, the
-- start of the indexed effective time, the first interpretation code).
INSERT INTO chart_result
SELECT DISTINCT ON (r.id)
    r.id,
    p.target_id,
    r.facility_id,
    coalesce(r.content #>> '{code,coding,0,code}', ''),
    coalesce(r.content #>> '{code,coding,0,display}', r.content #>> '{code,text}', 'Observation'),
    CASE WHEN jsonb_typeof(r.content #> '{valueQuantity,value}') = 'number'
         THEN (r.content #>> '{valueQuantity,value}')::double precision END,
    coalesce(r.content #>> '{valueQuantity,unit}', ''),
    (SELECT min(d.low) FROM search_date d WHERE d.resource_id = r.id AND d.param = 'date'),
    coalesce(r.content #>> '{interpretation,0,coding,0,code}', ''),
    coalesce(r.content -> 'category' @? '$[*].coding[*] ? (@.code == "vital-signs")', false)
FROM resource r
JOIN search_reference p ON p.resource_id = r.id AND p.param = 'patient'
WHERE r.resource_type = 'Observation' AND NOT r.deleted
ORDER BY r.id;
