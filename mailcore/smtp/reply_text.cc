#include "mailcore/smtp/reply_text.h"  // placeholder: implemented by the mailcore work
