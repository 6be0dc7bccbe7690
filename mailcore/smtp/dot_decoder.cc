#include "mailcore/smtp/dot_decoder.h"  // placeholder: implemented by the mailcore work
