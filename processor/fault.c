/*
 * fault.c - the names of the faults (ap/fault.h).
 */
#include "ap/fault.h"

static const char *const labels[] = {
#define AP_FAULT_LABEL(name, label, text) label,
    AP_FAULTS(AP_FAULT_LABEL)
#undef AP_FAULT_LABEL
};

static const char *const texts[] = {
#define AP_FAULT_TEXT(name, label, text) text,
    AP_FAULTS(AP_FAULT_TEXT)
#undef AP_FAULT_TEXT
};

const char *ap_fault_label(ap_fault_t fault)
{
    return (unsigned)fault < AP_FAULT_COUNT ? labels[fault] : "unknown";
}

const char *ap_fault_text(ap_fault_t fault)
{
    return (unsigned)fault < AP_FAULT_COUNT ? texts[fault] : "unknown";
}
